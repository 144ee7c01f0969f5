"""The CIFAR-10 kNN table command: its budget overrides fit every method's recipe, and it runs end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmarks.cifar10_knn import (
    METHODS,
    Budget,
    backbone_tables,
    budget_overrides,
    recipe_document,
    reusable,
    save,
    train_method,
    zero_init_last,
)
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


@pytest.mark.parametrize("name", ["SimCLR", "DINO", "CMC", "CPC v2"])
def test_budget_can_choose_the_view_pipeline_and_the_decoded_cache(name, host, tmp_path) -> None:
    package, recipe_name = METHODS[name]
    budget = Budget(data_dir=str(CIFAR), views_pipeline="batched", cache="decoded")
    recipe = resolve(recipe_name, host, budget_overrides(recipe_document(package, recipe_name), budget,
                                                         tmp_path / "seed0"))
    # CPC v2's views are whole images, made per image; it augments each patch in its step
    expected = "pil" if name == "CPC v2" else "batched"
    assert getattr(recipe.components["views"].config, "pipeline", "pil") == expected
    data = recipe.components["data"].config
    assert data.cache == "decoded"
    default = resolve(recipe_name, host, budget_overrides(recipe_document(package, recipe_name),
                                                          Budget(data_dir=str(CIFAR)), tmp_path))
    assert getattr(default.components["views"].config, "pipeline", "pil") == "pil"
    assert default.components["data"].config.cache == "none"


def test_a_run_with_a_saved_result_of_the_same_budget_is_not_repeated(tmp_path) -> None:
    budget = Budget(data_dir=str(CIFAR), epochs=3)
    summary = {"knn_top1": 40.0, "knn_top1_init": 20.0, "final_loss": 1.0, "recipe": "simclr_cifar10"}
    save(tmp_path / "simclr_cifar10" / "benchmark-result.json", budget, summary)
    assert train_method("SimCLR", budget, tmp_path) == summary  # returned without training
    assert reusable(tmp_path / "simclr_cifar10" / "benchmark-result.json", Budget(data_dir=str(CIFAR))) is None
    assert reusable(tmp_path / "missing.json", budget) is None
    older = json.loads((tmp_path / "simclr_cifar10" / "benchmark-result.json").read_text())
    del older["budget"]["eval_every"]  # saved before the budget had this field: it had its default
    (tmp_path / "older.json").write_text(json.dumps(older))
    assert reusable(tmp_path / "older.json", budget) == summary
    assert reusable(tmp_path / "older.json", replace(budget, eval_every=10)) is None


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
    rows = [line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| BYOL |")]
    assert len(rows) == 2 and all(row.count("|") == 12 for row in rows)
    over_seeds = [line for line in (tmp_path / "table.md").read_text().splitlines()
                  if line.startswith("| BYOL (over seeds) |")]
    cells = [cell.strip() for cell in over_seeds[0].split("|")[2:-1]]
    ours, theirs = [run["sslcore"]["knn_top1"] for run in runs], [run["lightly"]["knn_top1"] for run in runs]
    expected = [sum(ours) / 2, max(ours) - min(ours), sum(theirs) / 2, max(theirs) - min(theirs),
                (sum(ours) - sum(theirs)) / 2]
    assert cells[0] == "2" and [float(cell) for cell in cells[1:]] == pytest.approx(expected, abs=0.006)
