"""The CIFAR-10 kNN table command: its budget overrides fit every method's recipe, and it runs end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.cifar10_knn import METHODS, Budget, backbone_tables, budget_overrides, recipe_document, zero_init_last
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve

ROOT = Path(__file__).resolve().parents[2]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10"


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


@pytest.mark.parametrize("name", list(METHODS))
def test_budget_overrides_give_every_method_the_same_budget(name, host, tmp_path) -> None:
    package, recipe_name = METHODS[name]
    budget = Budget(data_dir=str(CIFAR), epochs=3, train_limit=1280, batch_size=64)
    document = recipe_document(package, recipe_name)
    recipe = resolve(recipe_name, host, budget_overrides(document, budget, tmp_path))
    run, data = recipe.run, recipe.components["data"].config
    assert (run.epochs, run.batch_size, run.seed, run.output_dir) == (3, 64, 0, str(tmp_path))
    assert (data.train_limit, data.test_limit) == (1280, 10000)
    for table in backbone_tables(document):
        assert recipe.components[table].config.name == "resnet18"
        assert recipe.components[table].config.cifar_stem is False
    evaluator = recipe.components["eval"].config
    assert (evaluator.k, evaluator.temperature) == (200, 0.07)
    assert recipe.schedule.warmup_epochs in (0.0, 0.3)
    if name == "SwAV":
        assert recipe.components["method"].config.freeze_prototypes_niters == 20


@pytest.mark.parametrize("name", list(METHODS))
def test_table_reports_how_each_backbone_is_initialised(name, host) -> None:
    package, recipe_name = METHODS[name]
    document = recipe_document(package, recipe_name)
    backbone = resolve(recipe_name, host, []).components[backbone_tables(document)[0]].build()
    last_scale = backbone.layer1[0].bn2.weight  # timm ResNet-18: the last BatchNorm of the first block
    expected = 0.0 if zero_init_last(document) else 1.0
    assert torch.equal(last_scale, torch.full_like(last_scale, expected))


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason="../shared/data/cifar10 is missing")
def test_table_command_runs_end_to_end(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cifar10_knn", "--methods", "SimCLR,SwAV", "--epochs", "1",
         "--train-limit", "128", "--test-limit", "64", "--batch-size", "32", "--runs-dir", str(tmp_path / "runs"),
         "--json", str(tmp_path / "table.json"), "--markdown", str(tmp_path / "table.md")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = json.loads((tmp_path / "table.json").read_text())
    assert 10.0 < table["raw_pixels_knn_top1"] < 100.0
    assert set(table["methods"]) == {"SimCLR", "SwAV"}
    for runs in table["methods"].values():
        assert [run["seed"] for run in runs] == [0] and "lightly" not in runs[0]
        summary = runs[0]["sslcore"]
        assert summary["steps"] == 4
        assert 0.0 <= summary["knn_top1_init"] <= 100.0 and 0.0 <= summary["knn_top1"] <= 100.0
    rows = [line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| Sim")]
    assert rows and "`simclr_cifar10`" in rows[0]


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason="../shared/data/cifar10 is missing")
@pytest.mark.skipif(importlib.util.find_spec("lightly") is None, reason="lightly is not installed (pip install '.[bench]')")
def test_lightly_peer_trains_on_the_same_budget_from_the_same_initial_backbone(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cifar10_knn", "--peer", "lightly", "--seeds", "0,1", "--methods", "BYOL",
         "--epochs", "1", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32",
         "--runs-dir", str(tmp_path / "runs"), "--json", str(tmp_path / "table.json"),
         "--markdown", str(tmp_path / "table.md")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["seeds"] == [0, 1] and table["peer"] == "lightly"
    runs = table["methods"]["BYOL"]
    assert [run["seed"] for run in runs] == [0, 1]
    for run in runs:
        ours, theirs = run["sslcore"], run["lightly"]
        assert ours["steps"] == theirs["steps"] == 2
        assert theirs["knn_top1_init"] == ours["knn_top1_init"]  # the same initial backbone, data and kNN
        assert math.isfinite(theirs["final_loss"]) and 0.0 <= theirs["knn_top1"] <= 100.0
    rows = [line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| BYOL")]
    assert len(rows) == 2 and all(row.count("|") == 12 for row in rows)
