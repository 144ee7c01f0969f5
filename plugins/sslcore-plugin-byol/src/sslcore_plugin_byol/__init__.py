"""BYOL for sslcore (Grill et al. 2020)."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BYOLConfig": "sslcore_plugin_byol.config",
        "build_byol": "sslcore_plugin_byol.method",
    },
)

__all__ = [
    "BYOLConfig",
    "build_byol",
]
