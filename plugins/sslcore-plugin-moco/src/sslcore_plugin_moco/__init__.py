"""MoCo v1 / v2 for sslcore: a query encoder, a momentum key encoder and a queue of negative keys."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "MoCoConfig": "sslcore_plugin_moco.config",
        "build_moco": "sslcore_plugin_moco.method",
    },
)

__all__ = [
    "MoCoConfig",
    "build_moco",
]
