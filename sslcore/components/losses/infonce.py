"""InfoNCE against a set of negative keys: MoCo v1/v2 (He et al., 2020, Alg. 1 and Eq. 1).

Also InstDisc's non-parametric softmax (Wu et al., 2018, Eq. 2) when the negatives are entries sampled from a
memory bank: pass them per query as ``(B, K, D)``; with the whole bank as negatives it is Eq. 2 exactly.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.losses._checks import check_ndim, check_same_shape


@attrs.frozen(kw_only=True)
class InfoNCEConfig:
    """Options of the ``infonce`` loss.

    Attributes:
        temperature: softmax temperature tau; 0.07 in MoCo v1 (official ``--moco-t`` default), 0.2 in MoCo v2.
        normalize: L2-normalise query, positive and negatives before the dot products. MoCo normalises in the
            model; normalising unit vectors again changes neither value nor gradient.
    """

    temperature: float = attrs.field(default=0.07, validator=attrs.validators.gt(0))
    normalize: bool = True


class InfoNCELoss(nn.Module):
    """``-log exp(q.k+/T) / (exp(q.k+/T) + sum_k exp(q.k/T))``, averaged over the local queries.

    Exactly MoCo's ``logits = cat([l_pos, l_neg]) / T`` with cross-entropy to label 0
    (facebookresearch/moco, moco/builder.py). The caller stops the gradient of the keys (MoCo's key encoder
    runs under ``no_grad``); the loss differentiates whatever it is given.
    """

    def __init__(self, temperature: float = 0.07, normalize: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.normalize = normalize

    def forward(self, query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """``query`` and ``positive`` are ``(B, D)``; ``negatives`` is ``(K, D)`` shared by all queries (a queue)
        or ``(B, K, D)`` per query (entries sampled from a memory bank)."""
        check_ndim("query", query, 2, "(B, D)")
        check_same_shape("query", query, "positive", positive)
        if negatives.ndim == 2:
            if negatives.shape[1] != query.shape[1]:
                raise ValueError(f"negatives must have shape (K, {query.shape[1]}), got {tuple(negatives.shape)}")
        elif negatives.ndim != 3 or negatives.shape[0] != query.shape[0] or negatives.shape[2] != query.shape[1]:
            raise ValueError(
                f"negatives must have shape (K, D) or (B, K, D) with B={query.shape[0]}, D={query.shape[1]}, "
                f"got {tuple(negatives.shape)}"
            )
        if self.normalize:
            query, positive, negatives = (F.normalize(t, dim=-1) for t in (query, positive, negatives))
        l_pos = (query * positive).sum(dim=1, keepdim=True)
        if negatives.ndim == 2:
            l_neg = query @ negatives.t()
        else:
            l_neg = torch.einsum("bd,bkd->bk", query, negatives)
        logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature
        labels = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
        return F.cross_entropy(logits, labels)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}"


def build_infonce(config: InfoNCEConfig) -> InfoNCELoss:
    """InfoNCE of a query against its positive key and a set of negatives (MoCo v1/v2, InstDisc Eq. 2)."""
    return InfoNCELoss(temperature=config.temperature, normalize=config.normalize)
