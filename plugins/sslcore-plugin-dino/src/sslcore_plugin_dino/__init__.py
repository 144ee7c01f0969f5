"""DINO for sslcore (Caron et al. 2021)."""

from sslcore.components.multicrop import same_size_runs
from sslcore_plugin_dino.gradients import cancel_gradients_, clip_gradients_per_parameter_
from sslcore_plugin_dino.method import DINO, DINOConfig, build_dino
from sslcore_plugin_dino.multicrop import MultiCropNetwork
from sslcore_plugin_dino.schedules import teacher_temperature

__all__ = [
    "DINO",
    "DINOConfig",
    "MultiCropNetwork",
    "build_dino",
    "cancel_gradients_",
    "clip_gradients_per_parameter_",
    "same_size_runs",
    "teacher_temperature",
]
