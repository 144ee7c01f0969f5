"""BYOL for sslcore (Grill et al. 2020)."""

from sslcore_plugin_byol.method import BYOLConfig, build_byol

__all__ = ["BYOLConfig", "build_byol"]
