"""SimSiam for sslcore (Chen and He 2021)."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "SimSiamConfig": "sslcore_plugin_simsiam.config",
        "build_simsiam": "sslcore_plugin_simsiam.method",
    },
)

__all__ = [
    "SimSiamConfig",
    "build_simsiam",
]
