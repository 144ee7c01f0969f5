"""SimSiam for sslcore (Chen and He 2021)."""

from sslcore_plugin_simsiam.method import SimSiam, SimSiamConfig, build_simsiam

__all__ = ["SimSiam", "SimSiamConfig", "build_simsiam"]
