"""CLAE recipes: the official settings, an end-to-end run whose export loads in timm, and an exact resume that
restores the main and the auxiliary BatchNorm statistics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import timm
import torch

from sslcore.components.attacks import Attack
from sslcore.components.dual_bn import DualBatchNorm
from sslcore.engine.trainer import Trainer
from sslcore.export import load_strictly
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve

SHORT = [
    "run.steps=6",
    "run.checkpoint_every=3",
    "run.log_every=1",
    "run.eval_every=0",
    "run.progress=false",
    "data.size=16",
    "views.size=16",
    "eval.transform.size=16",
    "eval.limit_train=16",
    "eval.limit_eval=16",
]


@pytest.mark.parametrize(
    ("name", "method", "epsilon"),
    [("clae_simclr_cifar10", "simclr", 0.015), ("clae_invaspread_cifar10", "invaspread", 0.006)],
)
def test_recipes_carry_the_official_attack_and_auxiliary_batchnorm(name, method, epsilon):
    recipe = resolve(name, PluginHost())
    assert recipe.components["method"].kind == method
    attack = recipe.components["attack"]
    assert attack.kind == "fgsm" and attack.config.epsilon == epsilon and attack.config.weight == 1.0
    assert (attack.config.from_view, attack.config.into_view, attack.config.random_start) == (0, 1, False)
    backbone = recipe.components["backbone"].config
    assert backbone.dual_bn and backbone.dual_bn_momentum == 0.01


def losses(run_dir: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r}


def test_clae_trains_end_to_end_and_exports_a_plain_timm_model(tmp_path):
    host = PluginHost()
    trainer = Trainer(
        resolve("clae_invaspread_smoke", host, [*SHORT, "run.steps=2", f"run.output_dir={tmp_path}"]), host
    )
    assert isinstance(trainer.attack, Attack)
    trainer.fit()
    for record in losses(tmp_path / "clae_invaspread_smoke").values():
        assert record["loss"] == pytest.approx(record["clean_loss"] + record["adversarial_loss"], rel=1e-5)
    plain = timm.create_model("resnet10t", num_classes=0)
    load_strictly(plain, tmp_path / "clae_invaspread_smoke" / "backbone.safetensors")


def test_resume_restores_both_sets_of_batchnorm_statistics(tmp_path):
    overrides = [*SHORT, f"run.output_dir={tmp_path}"]
    run_dir = tmp_path / "clae_smoke"
    Trainer(resolve("clae_smoke", PluginHost(), overrides), PluginHost()).fit()
    straight = torch.load(run_dir / "checkpoints" / "step_00000006" / "pytorch_model.bin", weights_only=True)
    straight_losses = losses(run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "step_00000006")
    (run_dir / "summary.json").unlink()
    trainer = Trainer(resolve("clae_smoke", PluginHost(), overrides), PluginHost())
    trainer.fit()
    resumed = torch.load(run_dir / "checkpoints" / "step_00000006" / "pytorch_model.bin", weights_only=True)
    assert {s: losses(run_dir)[s]["loss"] for s in (4, 5, 6)} == {s: straight_losses[s]["loss"] for s in (4, 5, 6)}
    twins = [name for name in straight if ".aux.running_" in name]
    assert len(twins) == 2 * sum(isinstance(m, DualBatchNorm) for m in trainer.method.modules())
    assert not torch.equal(straight[twins[0]], straight[twins[0].replace(".aux.", ".main.")])
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
