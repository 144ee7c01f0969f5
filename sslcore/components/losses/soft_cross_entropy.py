"""Cross-entropy to soft targets: SwAV's swapped prediction (Caron et al., 2020, Eq. 1-2) and DINO's
student-teacher loss (Caron et al., 2021, Eq. 1). The targets (Sinkhorn codes, a centred and sharpened
teacher) are computed by the method and carry no gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.loss_configs import SoftCrossEntropyConfig
from sslcore.components.losses._checks import check_ndim, check_same_shape


def soft_cross_entropy(targets: torch.Tensor, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``-sum_k targets_k log softmax(logits / T)_k``, averaged over the batch.

    ``targets`` are probabilities ``(B, K)``; ``logits`` are the student's scores ``(B, K)``. As official
    swav main_swav.py (``-mean(sum(q * log_softmax(x / T)))``) and dino main_dino.py ``DINOLoss``.
    """
    check_ndim("logits", logits, 2, "(B, K)")
    check_same_shape("targets", targets, "logits", logits)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return -(targets * F.log_softmax(logits / temperature, dim=1)).sum(dim=1).mean()


class SoftCrossEntropyLoss(nn.Module):
    """:func:`soft_cross_entropy` as a module: ``forward(targets (B, K), logits (B, K)) -> scalar``."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(targets, logits, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


def build_soft_cross_entropy(config: SoftCrossEntropyConfig) -> SoftCrossEntropyLoss:
    """Cross-entropy between target probabilities and the tempered softmax of logits (SwAV, DINO)."""
    return SoftCrossEntropyLoss(temperature=config.temperature)
