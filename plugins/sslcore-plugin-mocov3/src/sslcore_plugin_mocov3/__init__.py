"""MoCo v3 for sslcore: a momentum encoder, a predictor and the keys of the global batch."""

from sslcore_plugin_mocov3.method import MoCoV3Config, build_mocov3

__all__ = ["MoCoV3Config", "build_mocov3"]
