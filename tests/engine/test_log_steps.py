"""The loop reads the device at log and checkpoint steps only: the logged loss is the mean since the previous record,
a non-finite loss is still named by its step and never checkpointed, and a resume in the middle of a window logs
what the uninterrupted run logged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import engine_test_plugin
import pytest
from engine_support import MOCO_STORE, recipe_text

from sslcore.engine.checkpoint import latest_checkpoint
from sslcore.engine.trainer import Trainer
from sslcore.errors import SslcoreError
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve


def train(recipe: Path, *overrides: str) -> dict:
    host = PluginHost(autoload=False, extra_plugins=[("pairwise", engine_test_plugin)])
    return Trainer(resolve(str(recipe), host, overrides), host).fit()


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "loss" in r}


def test_logged_losses_are_window_means_and_a_resume_mid_window_logs_the_same(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=4, batch=8, store=MOCO_STORE))
    run_dir = tmp_path / "out" / "r"
    train(recipe)
    every = losses(run_dir)
    summary = train(recipe, "run.resume=never", "run.log_every=2", "run.checkpoint_every=3")
    windows = losses(run_dir)
    assert sorted(windows) == [2, 4]
    for step in (2, 4):
        assert windows[step] == pytest.approx((every[step - 1] + every[step]) / 2, rel=1e-6)
    assert summary["final_loss"] == windows[4]

    shutil.rmtree(run_dir / "checkpoints" / "step_00000004")
    (run_dir / "summary.json").unlink()
    capsys.readouterr()
    train(recipe, "run.log_every=2", "run.checkpoint_every=3")  # resumes in the window of steps 3-4
    assert "at step 3" in capsys.readouterr().out
    assert losses(run_dir) == windows


def test_a_non_finite_loss_between_log_steps_is_named_and_never_checkpointed(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=8, method_extra="nan_at_step = 3"))
    with pytest.raises(SslcoreError, match=r"non-finite \(nan\) at step 3;"):
        train(recipe, "run.log_every=5", "run.checkpoint_every=2")  # found at step 4, before its checkpoint
    assert latest_checkpoint(tmp_path / "out" / "r").name == "step_00000002"
