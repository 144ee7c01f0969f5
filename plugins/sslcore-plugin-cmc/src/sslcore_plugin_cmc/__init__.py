"""CMC for sslcore (Tian, Krishnan, Isola, "Contrastive Multiview Coding", ECCV 2020)."""

from sslcore.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CMC": "sslcore_plugin_cmc.method",
        "CMCConfig": "sslcore_plugin_cmc.config",
        "CMCEncoder": "sslcore_plugin_cmc.method",
        "CMCViewsConfig": "sslcore_plugin_cmc.config",
        "ColorSpace": "sslcore_plugin_cmc.color",
        "MODALITIES": "sslcore_plugin_cmc.color",
        "Modality": "sslcore_plugin_cmc.color",
        "build_cmc": "sslcore_plugin_cmc.method",
        "build_cmc_views": "sslcore_plugin_cmc.views",
        "rgb_features": "sslcore_plugin_cmc.color",
    },
)

__all__ = [
    "CMC",
    "MODALITIES",
    "CMCConfig",
    "CMCEncoder",
    "CMCViewsConfig",
    "ColorSpace",
    "Modality",
    "build_cmc",
    "build_cmc_views",
    "rgb_features",
]
