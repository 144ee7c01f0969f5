"""MoCo v3 for sslcore: a momentum encoder, a predictor and the keys of the global batch."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "MoCoV3Config": "sslcore_plugin_mocov3.config",
        "build_mocov3": "sslcore_plugin_mocov3.method",
    },
)

__all__ = [
    "MoCoV3Config",
    "build_mocov3",
]
