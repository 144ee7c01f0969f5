"""InvaSpread for sslcore (Ye et al. 2019, "Unsupervised Embedding Learning via Invariant and Spreading Instance
Feature")."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "InvaSpreadConfig": "sslcore_plugin_invaspread.config",
        "build_invaspread": "sslcore_plugin_invaspread.method",
    },
)

__all__ = [
    "InvaSpreadConfig",
    "build_invaspread",
]
