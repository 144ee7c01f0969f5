"""SimSiam for sslcore (Chen and He 2021)."""

from sslcore_plugin_simsiam.method import SimSiamConfig, build_simsiam

__all__ = ["SimSiamConfig", "build_simsiam"]
