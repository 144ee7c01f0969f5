"""MoCo v3's contrastive loss ``ctr(q, k)`` (Chen, Xie and He, 2021, Alg. 1).

The keys of the whole global batch are the dictionary: the positive of local query i is global key
``offset + i``, every other key is a negative. The method symmetrises it, ``ctr(q1, k2) + ctr(q2, k1)``
(official moco/builder.py returns ``l1 + l2``, not their mean).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.losses._checks import check_global, check_ndim


@attrs.frozen(kw_only=True)
class MoCoV3ContrastiveConfig:
    """Options of the ``mocov3_contrastive`` loss.

    Attributes:
        temperature: tau; 1.0 is the official default (ResNet-50 recipe, main_moco.py ``--moco-t``),
            ViT recipes use 0.2.
    """

    temperature: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))


class MoCoV3ContrastiveLoss(nn.Module):
    """``CrossEntropy(q k_all^T / T, offset + arange(B)) * 2T`` on L2-normalised vectors.

    The ``2 * T`` factor is the paper's and official code's (``ctr_loss``): it makes the gradient scale
    independent of tau. Keys come from the momentum encoder; the caller gathers them (without gradient in
    MoCo v3; with :func:`sslcore.distributed.gather_with_grad` the loss is just as correct).
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, q: torch.Tensor, k_all: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``q``: local queries ``(B, D)``; ``k_all``: global keys ``(N*B, D)`` (the local keys on one
        process); ``offset``: index of this rank's first sample in ``k_all``."""
        check_ndim("q", q, 2, "(B, D)")
        check_ndim("k_all", k_all, 2, "(N*B, D)")
        if k_all.shape[1] != q.shape[1]:
            raise ValueError(f"k_all has width {k_all.shape[1]}, q has width {q.shape[1]}")
        check_global(q.shape[0], k_all.shape[0], offset, "k_all")
        q = F.normalize(q, dim=1)
        k_all = F.normalize(k_all, dim=1)
        logits = q @ k_all.t() / self.temperature
        labels = torch.arange(q.shape[0], device=q.device) + offset
        return F.cross_entropy(logits, labels) * (2 * self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


def build_mocov3_contrastive(config: MoCoV3ContrastiveConfig) -> MoCoV3ContrastiveLoss:
    """MoCo v3 ctr(q, k): InfoNCE against the keys of the global batch, scaled by 2*tau."""
    return MoCoV3ContrastiveLoss(temperature=config.temperature)
