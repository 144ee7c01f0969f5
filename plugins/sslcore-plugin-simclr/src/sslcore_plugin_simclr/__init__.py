"""SimCLR v1 / v2 for sslcore (Chen et al. 2020a, 2020b)."""

from sslcore_plugin_simclr.method import SimCLRConfig, build_simclr

__all__ = ["SimCLRConfig", "build_simclr"]
