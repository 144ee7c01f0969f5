"""The collapse guard: every InfoNCE-family loss states its value when all embeddings coincide, and the engine
warns once, in one line, when a logged loss sits there."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sslcore.components.losses import (
    InfoNCELoss,
    InvaSpreadLoss,
    MoCoV3ContrastiveLoss,
    NegativeCosineLoss,
    NTXentLoss,
    SupConLoss,
)
from sslcore.engine.collapse import CollapseGuard
from sslcore.keys import Keys

B, D = 4, 8


def in_batch(z: torch.Tensor) -> Keys:
    """SimCLR's in-batch keys of the 2B rows ``cat(view 1, view 2)``: positive the other view, self excluded."""
    n = z.shape[0] // 2
    own = torch.arange(2 * n)
    return Keys(bank=z, positive_index=(own + n) % (2 * n), exclude_index=own,
                labels=torch.arange(2 * n) % n, query_labels=torch.arange(2 * n) % n)


CASES = {
    "infonce (queue)": (InfoNCELoss(0.2), lambda z: Keys(positive=z[:B], bank=z.repeat(3, 1)), B, math.log(1 + 3 * B)),
    "ntxent": (NTXentLoss(0.5), in_batch, 2 * B, 2 * math.log(2 * B - 1)),
    "mocov3_contrastive": (MoCoV3ContrastiveLoss(0.2), lambda z: Keys(bank=z, positive_index=torch.arange(B)),
                           B, 2 * 0.2 * math.log(B)),
    "supcon": (SupConLoss(0.1, 0.07), in_batch, 2 * B, 0.1 / 0.07 * math.log(2 * B - 1)),
    "invaspread": (InvaSpreadLoss(0.1), in_batch, 2 * B,
                   math.log(2 * B - 1) - (2 * B - 2) * math.log(1 - 1 / (2 * B - 1))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_collapse_value_is_the_loss_of_identical_embeddings(name):
    loss, keys_of, rows, expected = CASES[name]
    same = torch.ones(rows, D)
    keys, query = keys_of(same), same[:rows]
    assert loss.collapse_value(query, keys) == pytest.approx(expected, rel=1e-9)
    assert loss(query, keys).item() == pytest.approx(expected, rel=1e-5)


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.loss = NTXentLoss(temperature=0.5)
        self.similarity = NegativeCosineLoss()  # no collapse value: not watched

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.loss(z, in_batch(z))


def test_the_guard_warns_once_when_the_loss_sits_at_its_collapse_value():
    model = Model()
    guard = CollapseGuard(model)
    assert guard.watched == ["loss (NTXentLoss)"]
    torch.manual_seed(0)
    distinct = torch.randn(2 * B, D)
    model(torch.cat([distinct[:B], distinct[:B] + 0.01 * distinct[B:]]))  # well-separated pairs: far below
    assert guard.check() is None
    for _ in range(3):
        model(torch.ones(2 * B, D) + 1e-6 * torch.randn(2 * B, D))
    warning = guard.check()
    assert warning is not None and "\n" not in warning
    assert f"{2 * math.log(2 * B - 1):.4f}" in warning and "NTXentLoss" in warning
    model(torch.ones(2 * B, D))
    assert guard.check() is None  # once per run
    assert guard.check() is None  # an empty window says nothing
