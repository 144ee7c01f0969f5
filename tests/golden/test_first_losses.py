"""Every method computes what it computed in wave 1: the first five losses of each method plugin on a fixed batch,
recorded at f316207 before the core-v2 rewrite (first_losses.json, made by record_wave1.py), are reproduced by the
current code through the engine's step (:func:`sslcore.testing.training_step`)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from sslcore.method import Batch, StepInfo
from sslcore.testing import build_recipe, single_thread, tiny_host, training_step

CASES: dict[str, Any] = json.loads((Path(__file__).parent / "first_losses.json").read_text())
NAMES = sorted(name for name in CASES if not name.startswith("_"))


def first_losses(case: dict[str, Any]) -> list[float]:
    """The protocol of first_losses.json's ``_protocol``: seed 0 before the build, seed 1000 + k before step k."""
    plugin = importlib.import_module(f"sslcore_plugin_{case['plugin']}.plugin")
    torch.manual_seed(0)
    _, method = build_recipe(
        case["recipe"],
        tiny_host(case["plugin"], plugin),
        *case["overrides"],
        num_samples=case["num_samples"],
        total_steps=case["total_steps"],
        steps_per_epoch=case["steps_per_epoch"],
    )
    size = case["batch_size"]
    generator = torch.Generator().manual_seed(0)
    views = [torch.randn(size, 3, side, side, generator=generator) for side in case["view_sizes"]]
    labels = torch.arange(size) % 3 if case["labels"] is not None else None
    batch = Batch(views=views, index=torch.arange(size), label=labels)
    optimizer = torch.optim.SGD(method.parameters(), lr=case["optimizer"]["lr"], momentum=0.9)
    losses = []
    for k in range(5):
        torch.manual_seed(1000 + k)
        output = training_step(method, optimizer, batch, StepInfo(k, case["total_steps"], case["steps_per_epoch"]))
        losses.append(float(output.loss.detach()))
    return losses


@pytest.mark.parametrize("name", NAMES)
def test_first_five_losses_equal_wave_one(name: str) -> None:
    with single_thread():
        losses = first_losses(CASES[name])
    assert losses == pytest.approx(CASES[name]["losses"], rel=1e-5, abs=1e-6)
