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

import attrs
import torch
from torch import nn



@attrs.frozen(kw_only=True)
class InvaSpreadLossConfig:
    """Options of the ``invaspread`` loss.

    Fields:
        temperature: tau of the softmax over the batch; 0.1 in the paper (sec. 4) and the official
            ``demo_seen.py --batch-t 0.1``.
    """

    temperature: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))


class InvaSpreadLoss(nn.Module):
    """The mean over this process's 2B anchors (both views of its B images) against the global batch.

    ``features`` are L2-normalised embeddings, as the official network's last layer (``Normalize(2)``) makes
    them; they are not normalised again here. Distributed contract: every rank passes its local ``features`` and
    the gathered ``all_features`` of every rank with its ``offset``; the mean of the ranks' losses equals the
    loss of one process holding the global batch, and since keys carry no gradient, so do the gradients.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(
        self, features: torch.Tensor, all_features: torch.Tensor | None = None, offset: int = 0
    ) -> torch.Tensor:
        """``features``: ``(B, 2, D)``, both views of this rank's images; ``all_features``: ``(N*B, 2, D)``, the
        global batch (default: the local one); ``offset``: index of ``features[0]`` in ``all_features``."""
        if features.ndim != 3 or features.shape[1] != 2:
            raise ValueError(f"features must have shape (B, 2, D) (two views per image), got {tuple(features.shape)}")
        batch, _, dim = features.shape
        keys = features if all_features is None else all_features
        if keys.ndim != 3 or keys.shape[1:] != features.shape[1:]:
            raise ValueError(f"all_features must have shape (N*B, 2, {dim}), got {tuple(keys.shape)}")
        total = keys.shape[0]
        if offset < 0 or offset + batch > total:
            raise ValueError(
                f"offset {offset} with {batch} local images does not fit the {total} images of all_features; "
                "pass this rank's offset into the gathered batch (rank * local batch size)"
            )

        # Rows ordered [view 1; view 2], as the official torch.cat((inputs1, inputs2), 0); float32 even under
        # mixed precision (scores at temperature 0.1 lose too much in half precision).
        dtype = torch.promote_types(features.dtype, torch.float32)
        with torch.autocast(features.device.type, enabled=False):
            anchors = torch.cat([features[:, 0], features[:, 1]]).to(dtype)
            contrast = torch.cat([keys[:, 0], keys[:, 1]]).detach().to(dtype)  # x.t().data, reordered_x.data
            logits = (anchors @ contrast.t()) / self.temperature
        rows = torch.arange(batch, device=features.device) + offset
        own = torch.cat([rows, rows + total])
        positive = torch.cat([rows + total, rows])
        own_mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, own[:, None], True)
        logits = logits.masked_fill(own_mask, float("-inf"))  # all_prob * diag_mat: no self-pair
        log_ratio = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # log(s_ik / D_i)
        log_positive = log_ratio.gather(1, positive[:, None]).squeeze(1)
        negative_mask = own_mask.scatter(1, positive[:, None], True)
        # log(1 - s_ik / D_i) over the negatives; masked entries are exp(-inf) = 0 and add log(1) = 0.
        log_spread = torch.log1p(-log_ratio.masked_fill(negative_mask, float("-inf")).exp()).sum(dim=1)
        return -(log_positive + log_spread).sum() / anchors.shape[0]

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


def build_invaspread_loss(config: InvaSpreadLossConfig) -> InvaSpreadLoss:
    """InvaSpread's softmax embedding loss: invariant positive and spread-out negatives within the batch."""
    return InvaSpreadLoss(temperature=config.temperature)
