"""Losses between a prediction and a target without negatives: SimSiam's negative cosine and BYOL's
normalised MSE, ``loss(query, keys)`` with the target in ``keys.positive``. Both stop no gradient themselves:
the method passes ``z.detach()`` (SimSiam's stop-grad) or a target network's output produced under
``no_grad`` (BYOL). Keys that carry negatives are an error: these losses would ignore them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.loss_configs import NegativeCosineConfig, NormalizedMSEConfig
from sslcore.components.losses._checks import check_ndim, check_same_shape
from sslcore.keys import Keys


def _cosine(p: torch.Tensor, keys: Keys, loss: str) -> torch.Tensor:
    """cos(p_i, z_i) of each prediction with its query's positive key ``z`` (the target branch's output)."""
    keys.require(loss, "positive")
    keys.forbid(loss, "bank")
    z = keys.positive
    assert z is not None
    check_ndim("p", p, 2, "(B, D)")
    check_same_shape("p", p, "z", z)
    return (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1)


class NegativeCosineLoss(nn.Module):
    """``D(p, z) = -cos(p, z)``, averaged over the batch (SimSiam, Chen and He, 2021, Eq. 1).

    The symmetrised loss ``D(p1, z2)/2 + D(p2, z1)/2`` (Eq. 2) with ``z`` detached is the method's business.
    """

    def forward(self, query: torch.Tensor, keys: Keys) -> torch.Tensor:
        """``query``: predictions ``p`` ``(B, D)``; ``keys.positive``: targets ``z`` ``(B, D)`` (already detached)."""
        return -_cosine(query, keys, "negative_cosine").mean()


class NormalizedMSELoss(nn.Module):
    """``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)``, averaged over the batch (BYOL, Grill et al., 2020, Eq. 2).

    BYOL's total loss adds the two directions (Eq. 2's L + L~); the method does that.
    """

    def forward(self, query: torch.Tensor, keys: Keys) -> torch.Tensor:
        """``query``: online predictions ``(B, D)``; ``keys.positive``: target projections ``(B, D)`` (no gradient)."""
        return (2 - 2 * _cosine(query, keys, "normalized_mse")).mean()


def build_negative_cosine(config: NegativeCosineConfig) -> NegativeCosineLoss:
    """Negative cosine similarity between prediction and (stop-gradient) target (SimSiam)."""
    return NegativeCosineLoss()


def build_normalized_mse(config: NormalizedMSEConfig) -> NormalizedMSELoss:
    """Mean squared error between L2-normalised prediction and target, 2 - 2 cos (BYOL)."""
    return NormalizedMSELoss()
