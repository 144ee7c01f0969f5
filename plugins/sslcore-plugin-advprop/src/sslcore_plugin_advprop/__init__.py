"""AdvProp (Xie et al. 2020, "Adversarial Examples Improve Image Recognition") for sslcore: a supervised
cross-entropy method and crop-and-flip views; the PGD attack and the auxiliary BatchNorm come from the core."""

from sslcore_plugin_advprop.method import SupervisedConfig, SupervisedMethod, build_supervised
from sslcore_plugin_advprop.views import CropFlipViewsConfig, build_crop_flip

__all__ = ["CropFlipViewsConfig", "SupervisedConfig", "SupervisedMethod", "build_crop_flip", "build_supervised"]
