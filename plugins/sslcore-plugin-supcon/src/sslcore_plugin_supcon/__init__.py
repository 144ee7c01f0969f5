"""SupCon for sslcore (Khosla et al. 2020, "Supervised Contrastive Learning")."""

from sslcore_plugin_supcon.method import SupCon, SupConMethodConfig, build_supcon

__all__ = ["SupCon", "SupConMethodConfig", "build_supcon"]
