"""InvaSpread for sslcore (Ye et al. 2019, "Unsupervised Embedding Learning via Invariant and Spreading Instance
Feature")."""

from sslcore_plugin_invaspread.method import InvaSpreadConfig, build_invaspread

__all__ = ["InvaSpreadConfig", "build_invaspread"]
