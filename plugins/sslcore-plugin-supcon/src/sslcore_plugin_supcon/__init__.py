"""SupCon for sslcore (Khosla et al. 2020, "Supervised Contrastive Learning")."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "SupConMethodConfig": "sslcore_plugin_supcon.config",
        "build_supcon": "sslcore_plugin_supcon.method",
    },
)

__all__ = [
    "SupConMethodConfig",
    "build_supcon",
]
