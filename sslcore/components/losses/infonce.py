"""InfoNCE against a set of keys: MoCo v1/v2 (He et al., 2020, Alg. 1 and Eq. 1), MoCo v3's ctr, SimCLR's NT-Xent.

Also InstDisc's non-parametric softmax (Wu et al., 2018, Eq. 2) when the negatives are entries sampled from a
memory bank (``(B, K, D)`` keys per query); with the whole bank as negatives it is Eq. 2 exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.loss_configs import InfoNCEConfig
from sslcore.components.losses.collapse import log_candidates
from sslcore.keys import Keys, contrast_logits


class InfoNCELoss(nn.Module):
    """``-log exp(q.k+/T) / (exp(q.k+/T) + sum_k exp(q.k/T))``, averaged over the local queries.

    With a queue's keys, exactly MoCo's ``logits = cat([l_pos, l_neg]) / T`` with cross-entropy to label 0
    (facebookresearch/moco, moco/builder.py); with in-batch keys, the cross-entropy over the global batch with
    the positive's column as label (MoCo v3, SimCLR's NT-Xent when the query itself is excluded). The key store
    decides whether gradients reach the keys; the loss differentiates whatever it is given.
    """

    name = "infonce"

    def __init__(self, temperature: float = 0.07, normalize: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.normalize = normalize

    def forward(self, query: torch.Tensor, keys: Keys) -> torch.Tensor:
        """``query``: ``(B, D)``; ``keys``: each query's positive (its own ``(B, D)`` key, or its column in the
        bank) and the negatives (a shared ``(K, D)`` bank such as a queue or the global batch, or ``(B, K, D)``
        per query such as memory-bank draws)."""
        logits, target = contrast_logits(query, keys, loss=self.name, normalize=self.normalize)
        return F.cross_entropy(logits / self.temperature, target)

    def collapse_value(self, query: torch.Tensor, keys: Keys) -> float:
        """The loss when every embedding is the same: ``ln C`` over the C candidate keys."""
        return log_candidates(query, keys)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}"


def build_infonce(config: InfoNCEConfig) -> InfoNCELoss:
    """InfoNCE of a query against its positive key and a set of negatives (MoCo v1/v2, InstDisc Eq. 2)."""
    return InfoNCELoss(temperature=config.temperature, normalize=config.normalize)
