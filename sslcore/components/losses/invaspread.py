"""The instance-wise softmax embedding loss of InvaSpread (Ye et al. 2019, sec. 3.1, Eq. 1-7), as the official
``BatchCriterion`` of mangye16/Unsupervised_Embedding_Learning (``BatchAverage.py``).

The 2B features of a batch are both augmented views of B images. For anchor ``i`` with positive ``p(i)`` (the
other view of the same image) and scores ``s_ik = exp(f_i . f_k / tau)`` over every other feature ``k != i``:

    D_i = sum_{k != i} s_ik                           (the positive included)
    L   = -1/(2B) sum_i [ log(s_ip(i) / D_i) + sum_{k != i, p(i)} log(1 - s_ik / D_i) ]

The first term makes the two views agree ("invariant"), the second pushes the other instances away
("spreading"). As in the official code (``x.t().data``, ``reordered_x.data``), the keys ``f_k`` and the positive
are constants: the gradient reaches each feature only through its own row, as an anchor. The official
``--batch-m`` weight of the negatives is 1 in every released setting and is fixed at 1 here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sslcore.components.loss_configs import InvaSpreadLossConfig
from sslcore.components.losses.collapse import num_candidates
from sslcore.keys import Keys


class InvaSpreadLoss(nn.Module):
    """The mean over this process's 2B anchors (both views of its B images) against the global batch.

    Queries and keys are L2-normalised embeddings, as the official network's last layer (``Normalize(2)``) makes
    them; they are not normalised again here. Distributed contract: the keys are the global batch of every rank;
    the mean of the ranks' losses equals the loss of one process holding the global batch, and since keys carry
    no gradient, so do the gradients.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, query: torch.Tensor, keys: Keys) -> torch.Tensor:
        """``query``: the ``2B`` features of this rank (both views of its images); ``keys``: the in-batch keys of
        the global batch (both views), with each query's positive (its other view) and its own column."""
        keys.require("invaspread", "bank", "positive_index", "exclude_index")
        bank, positive, own = keys.bank, keys.positive_index, keys.exclude_index
        assert bank is not None and positive is not None and own is not None
        if query.ndim != 2 or bank.ndim != 2 or bank.shape[1] != query.shape[1]:
            raise ValueError(f"invaspread needs (n, D) queries and (K, D) keys, got {tuple(query.shape)}, {tuple(bank.shape)}")
        # Float32 even under mixed precision (scores at temperature 0.1 lose too much in half precision).
        dtype = torch.promote_types(query.dtype, torch.float32)
        with torch.autocast(query.device.type, enabled=False):
            logits = (query.to(dtype) @ bank.detach().to(dtype).t()) / self.temperature  # x.t().data
        own_mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, own[:, None], True)
        logits = logits.masked_fill(own_mask, float("-inf"))  # all_prob * diag_mat: no self-pair
        log_ratio = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # log(s_ik / D_i)
        log_positive = log_ratio.gather(1, positive[:, None]).squeeze(1)
        negative_mask = own_mask.scatter(1, positive[:, None], True)
        # log(1 - s_ik / D_i) over the negatives; masked entries are exp(-inf) = 0 and add log(1) = 0.
        log_spread = torch.log1p(-log_ratio.masked_fill(negative_mask, float("-inf")).exp()).sum(dim=1)
        return -(log_positive + log_spread).sum() / query.shape[0]

    def collapse_value(self, query: torch.Tensor, keys: Keys) -> float:
        """Every ratio s_ik / D_i equal to 1/C over the C candidates: ``ln C - (C - 1) ln(1 - 1/C)``."""
        count = num_candidates(query, keys)
        return math.log(count) - (count - 1) * math.log1p(-1 / count) if count > 1 else 0.0

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


def build_invaspread_loss(config: InvaSpreadLossConfig) -> InvaSpreadLoss:
    """InvaSpread's softmax embedding loss: invariant positive and spread-out negatives within the batch."""
    return InvaSpreadLoss(temperature=config.temperature)
