"""``python -m benchmarks.reproduce cifar10``: lightly's settings fit every recipe, the table says what was
measured, and ``--quick`` runs end to end and resumes by skipping finished runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cifar10_knn import METHODS, recipe_document
from benchmarks.reproduce import LIGHTLY_CIFAR10, SETTINGS, overrides, table
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve

ROOT = Path(__file__).resolve().parents[2]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10"


@pytest.mark.parametrize("name", list(LIGHTLY_CIFAR10))
def test_every_method_takes_lightlys_setting(name, tmp_path) -> None:
    package, recipe_name = METHODS[name]
    document = recipe_document(package, recipe_name)
    setting = SETTINGS["200x512"]
    recipe = resolve(recipe_name, PluginHost(), overrides(document, setting, CIFAR, tmp_path))
    assert (recipe.run.epochs, recipe.run.batch_size) == (200, 512)
    assert recipe.run.eval_every == recipe.run.checkpoint_every == 10 * (50000 // 512)
    assert recipe.run.output_dir == str(tmp_path / "200x512") and recipe.run.resume == "auto"
    evaluator = recipe.components["eval"].config
    assert (evaluator.k, evaluator.temperature) == (200, 0.1)
    backbone = recipe.components["backbone"].config
    assert backbone.name == "resnet18" and backbone.cifar_stem
    if name == "SwAV":  # 2 epochs of frozen prototypes at batch 256 stay 2 epochs at batch 512
        assert recipe.components["method"].config.freeze_prototypes_niters == 195


def test_table_puts_lightlys_figure_beside_what_was_measured() -> None:
    rows = {"SimCLR": {"200x512": {"best": 80.04, "last": 79.5}}, "BYOL": {}}
    text = table(rows, [SETTINGS["200x512"], SETTINGS["800x512"]], "python -m benchmarks.reproduce cifar10")
    assert "| SimCLR | 84.8 / 80.0 / 79.5 | 87.9 / - / - |" in text
    assert "| BYOL | 86.8 / - / - | 91.0 / - / - |" in text
    assert "948454fe" in text


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason="../shared/data/cifar10 is missing")
def test_quick_runs_end_to_end_and_skips_finished_runs(tmp_path) -> None:
    command = [sys.executable, "-m", "benchmarks.reproduce", "cifar10", "--quick", "--methods", "SimCLR",
               "--data-dir", str(CIFAR), "--runs-dir", str(tmp_path)]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    metrics = tmp_path / "1x16" / "simclr_cifar10" / "metrics.jsonl"
    written = metrics.read_text()
    assert "SimCLR 1x16: kNN top-1 best" in first.stdout
    assert "| SimCLR | - / " in (tmp_path / "cifar10.md").read_text()  # lightly has no 1-epoch figure
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and metrics.read_text() == written  # finished: not trained again
