"""DINO for sslcore (Caron et al. 2021)."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DINO": "sslcore_plugin_dino.method",
        "DINOConfig": "sslcore_plugin_dino.config",
        "MultiCropNetwork": "sslcore_plugin_dino.multicrop",
        "build_dino": "sslcore_plugin_dino.method",
        "cancel_gradients_": "sslcore_plugin_dino.gradients",
        "clip_gradients_per_parameter_": "sslcore_plugin_dino.gradients",
        "same_size_runs": "sslcore.components.multicrop",
        "teacher_temperature": "sslcore_plugin_dino.schedules",
    },
)

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
