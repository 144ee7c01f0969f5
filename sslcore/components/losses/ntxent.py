"""NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR (Chen et al., 2020, Eq. 1).

Given in-batch keys that hold both views of the global batch, each query's positive being its other view and
the query itself excluded, NT-Xent is InfoNCE with cosine similarity: the ``ntxent`` loss is :class:`InfoNCELoss`
with SimCLR's defaults and name, times 2 as the official code (``loss_a + loss_b``).
"""

from __future__ import annotations

import torch

from sslcore.components.loss_configs import NTXentConfig
from sslcore.components.losses.infonce import InfoNCELoss
from sslcore.keys import Keys


class NTXentLoss(InfoNCELoss):
    """For each local anchor of either view: the positive is its other view, the negatives the other 2N-2
    samples of the global 2N (itself excluded by the keys); cross-entropy averaged over the 2B local anchors,
    times 2.

    The paper averages over the 2N anchors (Eq. 1, "L = 1/2N sum_k ..."); the official TF code returns
    ``loss = loss_a + loss_b`` (google-research/simclr objective.py, ``add_contrastive_loss``, line 86; tf2/
    objective.py the same), the means over each view's N anchors: twice the paper's value. We follow the code
    (the project's rule where code and paper differ): LARS excludes biases and BatchNorm parameters from
    adaptation, so they get the official update size only with the factor 2, and the gradient's share against the
    weight decay in ``||g + lambda w||`` is the official one. At collapse (every projection equal) the loss is
    ``2 ln(2N - 1)``.
    """

    name = "ntxent"

    def __init__(self, temperature: float = 0.1, normalize: bool = True) -> None:
        super().__init__(temperature=temperature, normalize=normalize)

    def forward(self, query: torch.Tensor, keys: Keys) -> torch.Tensor:
        return 2 * super().forward(query, keys)

    def collapse_value(self, query: torch.Tensor, keys: Keys) -> float:
        return 2 * super().collapse_value(query, keys)


def build_ntxent(config: NTXentConfig) -> NTXentLoss:
    """NT-Xent over the views of the global batch, each view's positive its other view (SimCLR)."""
    return NTXentLoss(temperature=config.temperature, normalize=config.normalize)
