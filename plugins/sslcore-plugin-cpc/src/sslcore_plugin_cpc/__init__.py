"""CPC v2 for sslcore (Hénaff et al. 2020, "Data-Efficient Image Recognition with Contrastive Predictive Coding")."""

from sslcore_plugin_cpc.context import MaskedConvContext, MaskedConvContextConfig
from sslcore_plugin_cpc.method import CPC, CPCConfig, build_cpc
from sslcore_plugin_cpc.patches import PatchGrid

__all__ = ["CPC", "CPCConfig", "MaskedConvContext", "MaskedConvContextConfig", "PatchGrid", "build_cpc"]
