"""Collapse values: what a contrastive loss equals when every embedding it compares is the same.

Then every logit of a query is equal, so InfoNCE-family losses reduce to a function of the number of candidate
keys C alone (``ln C`` for InfoNCE / NT-Xent). A loss that can state this value implements
``collapse_value(query, keys) -> float`` from shapes only (no device synchronisation);
:class:`sslcore.engine.collapse.CollapseGuard` compares the logged values against it.
"""

from __future__ import annotations

import math

import torch

from sslcore.keys import Keys


def num_candidates(query: torch.Tensor, keys: Keys) -> int:
    """How many keys each query's softmax runs over: the bank, plus a separate positive, minus the query itself."""
    bank = keys.bank
    count = bank.shape[-2] if bank is not None else 0
    return count + (keys.positive is not None) - (keys.exclude_index is not None)


def log_candidates(query: torch.Tensor, keys: Keys) -> float:
    """``ln C``: the cross-entropy of a uniform softmax over the C candidates (InfoNCE at collapse)."""
    return math.log(max(num_candidates(query, keys), 1))
