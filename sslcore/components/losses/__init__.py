"""Built-in losses, registered through the same hook as any plugin's.

Every loss is an ``nn.Module`` built by ``factory(config)``. Losses take LOCAL tensors and, where the formula
needs the global batch, the GLOBAL tensors gathered by the caller (with
:func:`sslcore.distributed.gather_with_grad`) plus the offset of this rank's samples in the global batch. They
never gather themselves and return the mean over this rank's local anchors, so N ranks with batch B and DDP's
gradient averaging equal one process with batch N*B.
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
    registry.add("soft_cross_entropy", build_soft_cross_entropy, SoftCrossEntropyConfig)
