"""BYOL for sslcore (Grill et al. 2020)."""

from sslcore_plugin_byol.method import BYOL, BYOLConfig, build_byol

__all__ = ["BYOL", "BYOLConfig", "build_byol"]
