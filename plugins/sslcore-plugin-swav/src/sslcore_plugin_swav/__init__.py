"""SwAV for sslcore (Caron et al. 2020): Sinkhorn cluster codes, swapped prediction, multi-crop."""

from sslcore_plugin_swav.method import SwAV, SwAVConfig, build_swav
from sslcore_plugin_swav.multicrop import multicrop_forward

__all__ = ["SwAV", "SwAVConfig", "build_swav", "multicrop_forward"]
