"""The quickstart shows self-supervised learning: its loss ends well below the value NT-Xent takes when every
projection is the same, the kNN accuracy of the backbone rises, and the raw-pixel kNN is reported beside it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sslcore.engine.trainer import train_from_recipe
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve


@pytest.mark.slow
def test_quickstart_learns(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    host = PluginHost()
    recipe = resolve("quickstart", host, [])
    assert recipe.components["loss"].kind == "ntxent"
    collapse = 2 * math.log(2 * recipe.run.batch_size - 1)  # loss_a + loss_b, each ln(2N - 1) at collapse
    summary = train_from_recipe("quickstart", [f"run.output_dir='{tmp_path}'", "run.progress=false"], host)
    printed = capsys.readouterr().out
    assert summary["final_loss"] < collapse - 1.0, (summary["final_loss"], collapse)
    assert "collapse value" not in printed
    assert summary["knn_top1"] > summary["knn_top1_init"] + 10
    assert "raw_pixels_knn_top1" in summary and "raw_pixels_knn_top1" in printed
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "quickstart" / "metrics.jsonl").read_text().splitlines())
              if "loss" in r]
    assert losses[-1] < losses[0]
