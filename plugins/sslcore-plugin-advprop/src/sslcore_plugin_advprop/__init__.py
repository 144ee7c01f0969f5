"""AdvProp (Xie et al. 2020, "Adversarial Examples Improve Image Recognition") for sslcore: a supervised
cross-entropy method and crop-and-flip views; the PGD attack and the auxiliary BatchNorm come from the core."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CropFlipViewsConfig": "sslcore_plugin_advprop.config",
        "SupervisedConfig": "sslcore_plugin_advprop.config",
        "SupervisedMethod": "sslcore_plugin_advprop.method",
        "build_crop_flip": "sslcore_plugin_advprop.views",
        "build_supervised": "sslcore_plugin_advprop.method",
    },
)

__all__ = ["CropFlipViewsConfig", "SupervisedConfig", "SupervisedMethod", "build_crop_flip", "build_supervised"]
