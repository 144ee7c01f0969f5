"""SwAV for sslcore (Caron et al. 2020): Sinkhorn cluster codes, swapped prediction, multi-crop."""

from sslcore.components.multicrop import multicrop_forward
from sslcore_plugin_swav.method import SwAV, SwAVConfig, build_swav

__all__ = ["SwAV", "SwAVConfig", "build_swav", "multicrop_forward"]
