"""SwAV for sslcore (Caron et al. 2020): Sinkhorn cluster codes, swapped prediction, multi-crop."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "SwAV": "sslcore_plugin_swav.method",
        "SwAVConfig": "sslcore_plugin_swav.config",
        "build_swav": "sslcore_plugin_swav.method",
        "multicrop_forward": "sslcore.components.multicrop",
    },
)

__all__ = [
    "SwAV",
    "SwAVConfig",
    "build_swav",
    "multicrop_forward",
]
