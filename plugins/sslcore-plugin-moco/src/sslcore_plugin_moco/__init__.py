"""MoCo v1 / v2 for sslcore: a query encoder, a momentum key encoder and a queue of negative keys."""

from sslcore_plugin_moco.method import MoCoConfig, build_moco

__all__ = ["MoCoConfig", "build_moco"]
