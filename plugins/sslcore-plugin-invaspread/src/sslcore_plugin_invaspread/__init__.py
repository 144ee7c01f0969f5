"""InvaSpread for sslcore (Ye et al. 2019, "Unsupervised Embedding Learning via Invariant and Spreading Instance
Feature")."""

from sslcore_plugin_invaspread.loss import InvaSpreadLoss, InvaSpreadLossConfig, build_invaspread_loss
from sslcore_plugin_invaspread.method import InvaSpread, InvaSpreadConfig, build_invaspread

__all__ = [
    "InvaSpread",
    "InvaSpreadConfig",
    "InvaSpreadLoss",
    "InvaSpreadLossConfig",
    "build_invaspread",
    "build_invaspread_loss",
]
