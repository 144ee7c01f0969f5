"""Built-in losses, registered through the same hook as any plugin's.

Every loss is an ``nn.Module`` built by ``factory(config)`` and called as ``loss(query, keys)``: this rank's
queries ``(B, D)`` and the :class:`sslcore.keys.Keys` a key store read for them (the global batch gathered with
the right gradient, a queue, memory-bank draws, or just each query's target). Losses never gather themselves and
return the mean over this rank's local queries, so N ranks with batch B and DDP's gradient averaging equal one
process with batch N*B. A loss that cannot use the keys it is given raises :class:`sslcore.keys.KeysMismatch`.
SwAV's and DINO's cross-entropy to soft targets keeps its own two-argument form ``loss(targets, logits)``.
"""

from __future__ import annotations

from sslcore.components.losses.cosine import (
    NegativeCosineConfig,
    NegativeCosineLoss,
    NormalizedMSEConfig,
    NormalizedMSELoss,
)
from sslcore.components.losses.infonce import InfoNCEConfig, InfoNCELoss
from sslcore.components.losses.invaspread import InvaSpreadLoss, InvaSpreadLossConfig
from sslcore.components.losses.mocov3 import MoCoV3ContrastiveConfig, MoCoV3ContrastiveLoss
from sslcore.components.losses.nce import NCEConfig, NCELoss
from sslcore.components.losses.ntxent import NTXentConfig, NTXentLoss
from sslcore.components.losses.sinkhorn import sinkhorn_knopp
from sslcore.components.losses.soft_cross_entropy import (
    SoftCrossEntropyConfig,
    SoftCrossEntropyLoss,
    soft_cross_entropy,
)
from sslcore.components.losses.supcon import SupConConfig, SupConLoss

__all__ = [
    "InfoNCEConfig",
    "InfoNCELoss",
    "InvaSpreadLoss",
    "InvaSpreadLossConfig",
    "MoCoV3ContrastiveConfig",
    "MoCoV3ContrastiveLoss",
    "NCEConfig",
    "NCELoss",
    "NTXentConfig",
    "NTXentLoss",
    "NegativeCosineConfig",
    "NegativeCosineLoss",
    "NormalizedMSEConfig",
    "NormalizedMSELoss",
    "SoftCrossEntropyConfig",
    "SoftCrossEntropyLoss",
    "SupConConfig",
    "SupConLoss",
    "sinkhorn_knopp",
    "soft_cross_entropy",
]


