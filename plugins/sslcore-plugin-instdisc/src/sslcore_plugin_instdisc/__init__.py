"""InstDisc for sslcore (Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination")."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "InstDisc": "sslcore_plugin_instdisc.method",
        "InstDiscConfig": "sslcore_plugin_instdisc.config",
        "build_instdisc": "sslcore_plugin_instdisc.method",
    },
)

__all__ = [
    "InstDisc",
    "InstDiscConfig",
    "build_instdisc",
]
