"""MoCo v1 / v2 for sslcore: a query encoder, a momentum key encoder and a queue of negative keys."""

from sslcore_plugin_moco.method import Encoder, MoCo, MoCoConfig, build_moco
from sslcore_plugin_moco.shuffle_bn import grouped_forward, shuffled_forward

__all__ = ["Encoder", "MoCo", "MoCoConfig", "build_moco", "grouped_forward", "shuffled_forward"]
