"""SimCLR v1 / v2 for sslcore (Chen et al. 2020a, 2020b)."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "SimCLRConfig": "sslcore_plugin_simclr.config",
        "build_simclr": "sslcore_plugin_simclr.method",
    },
)

__all__ = [
    "SimCLRConfig",
    "build_simclr",
]
