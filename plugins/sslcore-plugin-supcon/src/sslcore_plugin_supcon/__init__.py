"""SupCon for sslcore (Khosla et al. 2020, "Supervised Contrastive Learning")."""

from sslcore_plugin_supcon.method import SupConMethodConfig, build_supcon

__all__ = ["SupConMethodConfig", "build_supcon"]
