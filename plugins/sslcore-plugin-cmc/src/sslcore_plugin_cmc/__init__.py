"""CMC for sslcore (Tian, Krishnan, Isola, "Contrastive Multiview Coding", ECCV 2020)."""

from sslcore_plugin_cmc.color import MODALITIES, ColorSpace, Modality, rgb_features
from sslcore_plugin_cmc.method import CMC, CMCConfig, CMCEncoder, build_cmc
from sslcore_plugin_cmc.views import CMCViewsConfig, build_cmc_views

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
