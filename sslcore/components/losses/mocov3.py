"""MoCo v3's contrastive loss ``ctr(q, k)`` (Chen, Xie and He, 2021, Alg. 1).

The keys of the whole global batch are the dictionary: the positive of local query i is its own sample's key,
every other key is a negative. The method symmetrises it, ``ctr(q1, k2) + ctr(q2, k1)`` (official
moco/builder.py returns ``l1 + l2``, not their mean).
"""

from __future__ import annotations

import torch

from sslcore.components.loss_configs import MoCoV3ContrastiveConfig
from sslcore.components.losses.infonce import InfoNCELoss
from sslcore.keys import Keys


class MoCoV3ContrastiveLoss(InfoNCELoss):
    """InfoNCE on L2-normalised vectors times ``2 * T``: ``CrossEntropy(q k^T / T, positive) * 2T``.

    The ``2 * T`` factor is the paper's and official code's (``ctr_loss``): it makes the gradient scale
    independent of tau. With in-batch keys (MoCo v3) the labels are the positives' columns in the global batch.
    """

    name = "mocov3_contrastive"

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__(temperature=temperature, normalize=True)

    def forward(self, query: torch.Tensor, keys: Keys) -> torch.Tensor:
        return super().forward(query, keys) * (2 * self.temperature)

    def collapse_value(self, query: torch.Tensor, keys: Keys) -> float:
        return super().collapse_value(query, keys) * (2 * self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


def build_mocov3_contrastive(config: MoCoV3ContrastiveConfig) -> MoCoV3ContrastiveLoss:
    """MoCo v3 ctr(q, k): InfoNCE against the keys of the global batch, scaled by 2*tau."""
    return MoCoV3ContrastiveLoss(temperature=config.temperature)
