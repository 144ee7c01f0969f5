"""Built-in losses, registered through the same hook as any plugin's.

Every loss is an ``nn.Module`` built by ``factory(config)`` and called as ``loss(query, keys)``: this rank's
queries ``(B, D)`` and the :class:`sslcore.keys.Keys` a key store read for them (the global batch gathered with
the right gradient, a queue, memory-bank draws, or just each query's target). Losses never gather themselves and
return the mean over this rank's local queries, so N ranks with batch B and DDP's gradient averaging equal one
process with batch N*B. A loss that cannot use the keys it is given raises :class:`sslcore.keys.KeysMismatch`.
SwAV's and DINO's cross-entropy to soft targets keeps its own two-argument form ``loss(targets, logits)``.
"""

from __future__ import annotations

from sslcore import hookimpl
from sslcore.components.losses.cosine import (
    NegativeCosineConfig,
    NegativeCosineLoss,
    NormalizedMSEConfig,
    NormalizedMSELoss,
    build_negative_cosine,
    build_normalized_mse,
)
from sslcore.components.losses.infonce import InfoNCEConfig, InfoNCELoss, build_infonce
from sslcore.components.losses.invaspread import InvaSpreadLoss, InvaSpreadLossConfig, build_invaspread_loss
from sslcore.components.losses.mocov3 import MoCoV3ContrastiveConfig, MoCoV3ContrastiveLoss, build_mocov3_contrastive
from sslcore.components.losses.nce import NCEConfig, NCELoss, build_nce
from sslcore.components.losses.ntxent import NTXentConfig, NTXentLoss, build_ntxent
from sslcore.components.losses.sinkhorn import sinkhorn_knopp
from sslcore.components.losses.soft_cross_entropy import (
    SoftCrossEntropyConfig,
    SoftCrossEntropyLoss,
    build_soft_cross_entropy,
    soft_cross_entropy,
)
from sslcore.components.losses.supcon import SupConConfig, SupConLoss, build_supcon
from sslcore.registry import Registry

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
    "sslcore_register_losses",
]


@hookimpl
def sslcore_register_losses(registry: Registry) -> None:
    registry.add("infonce", build_infonce, InfoNCEConfig)
    registry.add("ntxent", build_ntxent, NTXentConfig)
    registry.add("mocov3_contrastive", build_mocov3_contrastive, MoCoV3ContrastiveConfig)
    registry.add("negative_cosine", build_negative_cosine, NegativeCosineConfig)
    registry.add("normalized_mse", build_normalized_mse, NormalizedMSEConfig)
    registry.add("supcon", build_supcon, SupConConfig)
    registry.add("nce", build_nce, NCEConfig)
    registry.add("invaspread", build_invaspread_loss, InvaSpreadLossConfig)
    registry.add("soft_cross_entropy", build_soft_cross_entropy, SoftCrossEntropyConfig)
