"""Supervised contrastive loss L^sup_out (Khosla et al., 2020, Eq. 2), as HobbitLong/SupContrast losses.py.

Anchors are all views of the local samples; the contrast set is all views of the global batch except the
anchor itself, optionally followed by labelled keys from a queue (SupCon with a MoCo-style queue, as in the
released ImageNet model). Positives are the contrast entries with the anchor's label.

Distributed contract: the in-batch key store gathers the global contrast set (with gradient) and its labels;
the loss is the mean over the local anchors, so the mean over ranks equals one process with the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.loss_configs import SupConConfig
from sslcore.components.losses._checks import check_ndim
from sslcore.components.losses.collapse import log_candidates
from sslcore.keys import Keys


class SupConLoss(nn.Module):
    """``-(T/T_base) * 1/|P(i)| sum_{p in P(i)} log softmax_{a != i}(z_i . z_a / T)_p``, mean over local anchors.

    An anchor without any positive (one view and a label unique in the contrast set) contributes 0 and still
    counts in the mean: the official code would return NaN (0/0) before its edge-case fix, which does exactly
    this. Counting it keeps the mean over ranks equal to the single-process loss.
    """

    def __init__(self, temperature: float = 0.1, base_temperature: float = 0.07, normalize: bool = True) -> None:
        super().__init__()
        if temperature <= 0 or base_temperature <= 0:
            raise ValueError(f"temperatures must be > 0, got {temperature} and {base_temperature}")
        self.temperature = temperature
        self.base_temperature = base_temperature
        self.normalize = normalize

    def forward(self, query: torch.Tensor, keys: Keys) -> torch.Tensor:
        """``query``: this rank's anchors ``(n, D)`` (every view of its samples); ``keys``: the contrast set as a
        shared bank ``(K, D)`` with its ``labels`` and the anchors' ``query_labels``, and ``exclude_index``, each
        anchor's own column (the in-batch keys of the global batch, optionally followed by a queue's)."""
        keys.require("supcon", "bank", "labels", "query_labels")
        bank, labels, query_labels = keys.bank, keys.labels, keys.query_labels
        assert bank is not None and labels is not None and query_labels is not None
        check_ndim("query", query, 2, "(n, D)")
        check_ndim("keys.bank", bank, 2, "(K, D)")
        if query_labels.shape != query.shape[:1] or labels.shape != bank.shape[:1]:
            raise ValueError(
                f"supcon needs one label per query and per key, got {tuple(query_labels.shape)} for "
                f"{query.shape[0]} queries and {tuple(labels.shape)} for {bank.shape[0]} keys"
            )
        if self.normalize:
            query, bank = F.normalize(query, dim=1), F.normalize(bank, dim=1)
        logits = query @ bank.t() / self.temperature
        columns = torch.arange(bank.shape[0], device=query.device)
        own = keys.exclude_index
        self_mask = (
            own.to(query.device)[:, None] == columns[None, :]
            if own is not None
            else torch.zeros_like(logits, dtype=torch.bool)
        )
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positives = (query_labels.to(labels.device)[:, None] == labels[None, :]) & ~self_mask
        count = positives.sum(dim=1).clamp(min=1)
        mean_log_prob_pos = log_prob.masked_fill(~positives, 0.0).sum(dim=1) / count
        return -(self.temperature / self.base_temperature) * mean_log_prob_pos.mean()

    def collapse_value(self, query: torch.Tensor, keys: Keys) -> float:
        """Every softmax uniform over the C contrast entries: ``(T / T_base) ln C`` (each anchor having a
        positive, as with two or more views)."""
        return self.temperature / self.base_temperature * log_candidates(query, keys)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, base_temperature={self.base_temperature}, normalize={self.normalize}"


def build_supcon(config: SupConConfig) -> SupConLoss:
    """Supervised contrastive loss over all views of the global batch, optionally with a labelled queue (SupCon)."""
    return SupConLoss(
        temperature=config.temperature, base_temperature=config.base_temperature, normalize=config.normalize
    )
