"""CPC v2 for sslcore (Hénaff et al. 2020, "Data-Efficient Image Recognition with Contrastive Predictive Coding")."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CPC": "sslcore_plugin_cpc.method",
        "CPCConfig": "sslcore_plugin_cpc.config",
        "MaskedConvContext": "sslcore_plugin_cpc.context",
        "MaskedConvContextConfig": "sslcore_plugin_cpc.config",
        "PatchGrid": "sslcore_plugin_cpc.patches",
        "build_cpc": "sslcore_plugin_cpc.method",
    },
)

__all__ = [
    "CPC",
    "CPCConfig",
    "MaskedConvContext",
    "MaskedConvContextConfig",
    "PatchGrid",
    "build_cpc",
]
