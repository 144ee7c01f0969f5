"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., 2020, Eq. 1 and Alg. 1).

Distributed contract: each rank passes its local views ``z1, z2`` (B rows) and the global ones ``all_z1, all_z2``
(N*B rows, gathered by the caller with :func:`sslcore.distributed.gather_with_grad`) plus ``offset``, the index of
its first sample in the global batch. The loss is the mean over the 2B local anchors, so the mean of the ranks'
losses is the loss of one process holding the global batch, and gradients match after DDP averaging.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.losses._checks import check_global, check_ndim, check_same_shape


@attrs.frozen(kw_only=True)
class NTXentConfig:
    """Options of the ``ntxent`` loss.

    Attributes:
        temperature: tau in Eq. 1; 0.1 is the default of the official code (google-research/simclr, run.py
            ``--temperature``) used for the ImageNet results; the CIFAR-10 experiments use 0.5.
        normalize: use cosine similarity (the paper's sim(u, v)); false uses raw dot products
            (the official ``--hidden_norm`` flag).
    """

    temperature: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
    normalize: bool = True


class NTXentLoss(nn.Module):
    """For each local anchor of either view: the positive is its other view, the negatives are the other
    2N-2 samples of the global 2N (itself excluded); cross-entropy averaged over the 2B local anchors.

    The paper averages over the 2N anchors (Eq. 1, "L = 1/2N sum_k ..."); the official TF code returns
    ``loss_a + loss_b`` (objective.py, ``add_contrastive_loss``), twice this value. We follow the paper: the
    factor only rescales the gradient, which LARS (SimCLR's optimiser) normalises away layer by layer.
    """

    def __init__(self, temperature: float = 0.1, normalize: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.normalize = normalize

    def forward(
        self,
        z1: torch.Tensor,
        z2: torch.Tensor,
        all_z1: torch.Tensor | None = None,
        all_z2: torch.Tensor | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """``z1, z2``: local projections of the two views ``(B, D)``; ``all_z1, all_z2``: the global ones
        ``(N*B, D)`` (default: the local ones); ``offset``: index of ``z1[0]`` in ``all_z1``."""
        check_ndim("z1", z1, 2, "(B, D)")
        check_same_shape("z1", z1, "z2", z2)
        if (all_z1 is None) != (all_z2 is None):
            raise ValueError("pass both all_z1 and all_z2 (the gathered views), or neither")
        if all_z1 is None or all_z2 is None:
            all_z1, all_z2 = z1, z2
        check_ndim("all_z1", all_z1, 2, "(N*B, D)")
        check_same_shape("all_z1", all_z1, "all_z2", all_z2)
        if all_z1.shape[1] != z1.shape[1]:
            raise ValueError(f"all_z1 has width {all_z1.shape[1]}, z1 has width {z1.shape[1]}")
        batch, total = z1.shape[0], all_z1.shape[0]
        check_global(batch, total, offset, "all_z1")
        if self.normalize:
            z1, z2, all_z1, all_z2 = (F.normalize(t, dim=1) for t in (z1, z2, all_z1, all_z2))

        anchors = torch.cat([z1, z2])  # (2B, D): view-1 anchors, then view-2 anchors
        keys = torch.cat([all_z1, all_z2])  # (2N, D): global view 1, then global view 2
        logits = anchors @ keys.t() / self.temperature
        local = torch.arange(batch, device=z1.device) + offset
        own = torch.cat([local, local + total])  # each anchor's own column: excluded (the 1[k != i] of Eq. 1)
        positive = torch.cat([local + total, local])  # the other view of the same sample
        logits = logits.scatter(1, own.unsqueeze(1), float("-inf"))
        return F.cross_entropy(logits, positive)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}"


def build_ntxent(config: NTXentConfig) -> NTXentLoss:
    """NT-Xent over two views with in-batch negatives from the global batch (SimCLR)."""
    return NTXentLoss(temperature=config.temperature, normalize=config.normalize)
