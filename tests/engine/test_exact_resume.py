"""Exact resume: a run resumed from a mid-epoch checkpoint logs, step for step, the losses of the uninterrupted run.

Every shipped method's smoke recipe, on one process; on two, the recipes that draw random numbers inside the step
(MoCo v2's shuffled BatchNorm, InstDisc's memory-bank negatives). Between steps something else consumes randomness
(the evaluation, the DataLoader iterator a resume makes to skip batches): equal losses show that every step's random
numbers come from (seed, step, process) alone. Stateful target updaters (the test plugin's ``counting``) come back
from the checkpoint for DINO, BYOL and SimSiam.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import engine_test_plugin
import pytest
import torch
from engine_support import accelerate_launch

from sslcore.engine.trainer import Trainer
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve

# 4 steps per epoch (64 samples, batch 16); the step-3 checkpoint is mid-epoch, steps 4-6 cross into epoch 1.
SHORT = ["run.steps=6", "run.checkpoint_every=3", "run.log_every=1", "run.eval_every=2", "run.progress=false",
         "data.train_limit=64", "eval.limit_train=32", "eval.limit_eval=16"]
SMOKE = ["advprop_smoke", "byol_smoke", "clae_invaspread_smoke", "clae_smoke", "cmc_smoke", "cmc_moco_smoke",
         "cpc_smoke", "dino_smoke", "hdge_smoke", "instdisc_smoke", "invaspread_smoke", "jem_smoke", "moco_smoke",
         "mocov3_smoke", "simclr_smoke", "simsiam_smoke", "supcon_smoke", "swav_smoke"]
#: Each draws random numbers inside its step (shuffling BN, memory-bank negatives, per-patch augmentation, SGLD chains
#: from a per-process replay buffer, PGD's random start): run on every CI run; the other recipes' two-process resume
#: is marked slow only to keep quick local loops quick.
RANDOM_IN_THE_STEP = ["moco_smoke", "instdisc_smoke", "cpc_smoke", "jem_smoke", "advprop_smoke"]


def small(name: str) -> list[str]:
    """16-pixel images (MoCo v3's ViT, CMC's and CPC's patch grid keep their sizes)."""
    if name in ("mocov3_smoke", "cmc_smoke", "cmc_moco_smoke", "cpc_smoke"):
        return []
    multicrop = name in ("dino_smoke", "swav_smoke")
    views = ["views.global_size=16", "views.local_size=8"] if multicrop else ["views.size=16"]
    return ["data.size=16", "eval.transform.size=16", *views]


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "loss" in r}


def forget_the_end(run_dir: Path, checkpoint: str = "step_00000006") -> None:
    """Leave the run as if it had stopped at its previous checkpoint."""
    shutil.rmtree(run_dir / "checkpoints" / checkpoint)
    (run_dir / "summary.json").unlink()


def train(name: str, overrides: list[str], host: PluginHost | None = None) -> dict:
    host = host or PluginHost()
    return Trainer(resolve(name, host, overrides), host).fit()


@pytest.mark.parametrize("name", SMOKE)
def test_resume_is_exact_on_one_process(tmp_path, capsys, name):
    overrides = [*SHORT, *small(name), f"run.output_dir={tmp_path}"]
    run_dir = tmp_path / name
    train(name, overrides)
    straight = losses(run_dir)
    forget_the_end(run_dir)
    capsys.readouterr()
    train(name, overrides)
    assert "at step 3" in capsys.readouterr().out
    resumed = losses(run_dir)
    assert sorted(resumed) == list(range(1, 7))
    assert {s: resumed[s] for s in (4, 5, 6)} == {s: straight[s] for s in (4, 5, 6)}


@pytest.mark.distributed
@pytest.mark.parametrize(
    "name", [name if name in RANDOM_IN_THE_STEP else pytest.param(name, marks=pytest.mark.slow) for name in SMOKE]
)
def test_resume_is_exact_on_two_processes(tmp_path, name):
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    args = [name, *SHORT, *small(name), f"run.output_dir={tmp_path}"]
    run_dir = tmp_path / name
    first = accelerate_launch(args, env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["processes"] == 2
    straight = losses(run_dir)
    forget_the_end(run_dir)
    again = accelerate_launch(args, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "at step 3" in again.stdout
    assert json.loads((run_dir / "summary.json").read_text())["processes"] == 2
    resumed = losses(run_dir)
    assert {s: resumed[s] for s in (4, 5, 6)} == {s: straight[s] for s in (4, 5, 6)}


def updater_steps(checkpoint: Path) -> list[int]:
    """The steps the ``counting`` updater saved in ``checkpoint`` (the engine's custom checkpoint objects)."""
    states = [torch.load(path, weights_only=False) for path in checkpoint.glob("custom_checkpoint_*.pkl")]
    (steps,) = [state["steps"] for state in states if "steps" in state]
    return steps


@pytest.mark.parametrize(
    "name, updater",
    [
        ("dino_smoke", ["target_updater.kind=counting"]),
        ("byol_smoke", ["target_updater.kind=counting"]),
        ("simsiam_smoke", ["target_updater.kind=counting", "target_updater.stop_grad=true"]),
    ],
)
def test_a_stateful_target_updater_is_restored_on_resume(tmp_path, capsys, name, updater):
    host = PluginHost(extra_plugins=[("engine_test", engine_test_plugin)])
    overrides = [*updater, *small(name), "run.steps=4", "run.checkpoint_every=2", "run.log_every=1",
                 "eval.limit_train=16", "eval.limit_eval=16", f"run.output_dir={tmp_path}"]
    run_dir = tmp_path / name
    train(name, overrides, host)
    straight = losses(run_dir)
    assert updater_steps(run_dir / "checkpoints" / "step_00000002") == [0, 1]
    forget_the_end(run_dir, "step_00000004")
    capsys.readouterr()
    train(name, overrides, host)
    assert "at step 2" in capsys.readouterr().out
    assert updater_steps(run_dir / "checkpoints" / "step_00000004") == [0, 1, 2, 3]  # 0 and 1 from the checkpoint
    resumed = losses(run_dir)
    assert {s: resumed[s] for s in (3, 4)} == {s: straight[s] for s in (3, 4)}
