"""End-to-end runs of the engine: outputs of a run, 1 vs 2 processes, export, CLI eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from engine_support import CIFAR, VIT, accelerate_launch, recipe_text, run_sslcore
from safetensors.torch import load_file

RUN_FILES = ("recipe.toml", "metrics.jsonl", "summary.json", "curves.png", "backbone.safetensors")


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "loss" in r}


def test_run_writes_every_output_and_evaluates(tmp_path, plugin_env):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=3, checkpoint_every=2, evaluate=True))
    # evaluations at every step but the last (which the final evaluation covers), whether or not it is a log step
    result = run_sslcore([str(recipe), "run.log_every=2", "run.eval_every=1"], plugin_env)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "out" / "r"
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000002", "step_00000003"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["processes"] == 1
    for key in ("epochs", "final_loss", "images_per_second", "wall_seconds", "knn_top1", "knn_top1_init"):
        assert key in summary, key
    assert 0.0 <= summary["knn_top1"] <= 100.0
    assert sorted(losses(run_dir)) == [1, 2, 3]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "knn_top1" in r] == [0, 1, 2, 3]
    assert "before training: knn_top1" in result.stdout and "after training: knn_top1" in result.stdout
    # the resolved recipe is complete: running it again reproduces the run
    resolved = (run_dir / "recipe.toml").read_text()
    assert 'kind = "pairwise"' in resolved and "seed = 0" in resolved


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path, plugin_env):
    """BN-free backbone and head: 2 processes x batch 8 reproduce 1 process x batch 16 step by step."""
    text = lambda out: recipe_text(out, steps=3, batch=16, backbone="vit_tiny_patch16_224", backbone_extra=VIT)
    (tmp_path / "one.toml").write_text(text(tmp_path / "one"))
    (tmp_path / "two.toml").write_text(text(tmp_path / "two"))
    single = run_sslcore([str(tmp_path / "one.toml")], plugin_env)
    assert single.returncode == 0, single.stderr
    double = accelerate_launch([str(tmp_path / "two.toml")], plugin_env)
    assert double.returncode == 0, double.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "r" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["global_batch"] == 16
    one, two = losses(tmp_path / "one" / "r"), losses(tmp_path / "two" / "r")
    assert sorted(one) == sorted(two) == [1, 2, 3]
    for step in one:
        assert two[step] == pytest.approx(one[step], abs=1e-4), step


def test_exported_backbone_loads_in_timm_with_identical_outputs(tmp_path, plugin_env):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=2))
    assert run_sslcore([str(recipe)], plugin_env).returncode == 0
    exported = tmp_path / "exported.safetensors"
    from sslcore.cli import main

    main(["export", str(tmp_path / "out" / "r"), str(exported)])
    weights = load_file(str(exported))
    loaded = timm.create_model("resnet18", num_classes=0, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(exported))).eval()
    reference = timm.create_model("resnet18", num_classes=0).eval()
    reference.load_state_dict(weights)
    fresh = timm.create_model("resnet18", num_classes=0).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), reference(images))
        assert not torch.allclose(loaded(images), fresh(images))


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason="../shared/data/cifar10 is missing")
def test_cifar10_runs_on_one_and_two_processes(tmp_path, plugin_env):
    data = (f'kind = "parquet"\ntrain = "{CIFAR / "train.parquet"}"\ntest = "{CIFAR / "test.parquet"}"\n'
            "train_limit = 512\ntest_limit = 256")
    for launcher, name in ((run_sslcore, "one"), (accelerate_launch, "two")):
        recipe = tmp_path / f"{name}.toml"
        recipe.write_text(recipe_text(tmp_path / name, steps=3, batch=32, data=data, evaluate=True,
                                      checkpoint_every=2))
        result = launcher([str(recipe)], plugin_env)
        assert result.returncode == 0, result.stderr[-3000:]
        run_dir = tmp_path / name / "r"
        for file in RUN_FILES:
            assert (run_dir / file).is_file(), (name, file)
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["processes"] == (1 if name == "one" else 2)
        assert "knn_top1" in summary


def test_sslcore_eval_knn_and_linear_on_a_finished_run(tmp_path, plugin_env):
    import subprocess
    import sys

    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=1))
    assert run_sslcore([str(recipe)], plugin_env).returncode == 0
    run_dir = str(tmp_path / "out" / "r")

    def evaluate(*args: str) -> dict:
        result = subprocess.run([sys.executable, "-m", "sslcore.cli", "eval", *args], env=plugin_env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    knn = evaluate("knn", run_dir, "eval.k=10", "eval.limit_train=300", "eval.limit_eval=100")
    linear = evaluate("linear", run_dir, "eval.epochs=2", "eval.limit_train=300", "eval.limit_eval=100")
    assert 0.0 <= knn["knn_top1"] <= 100.0 and "knn_top5" in knn
    assert 0.0 <= linear["linear_top1"] <= 100.0


def test_eval_and_export_of_a_run_whose_method_plugin_is_gone(tmp_path, plugin_env):
    import subprocess
    import sys

    from safetensors.torch import save_file

    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=1, backbone="resnet10t", backbone_extra="cifar_stem = true"))
    assert run_sslcore([str(recipe)], plugin_env).returncode == 0
    run_dir = tmp_path / "out" / "r"
    blocked = dict(plugin_env, SSLCORE_BLOCK_PLUGINS="pairwise")  # the run's method plugin

    def sslcore(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "sslcore.cli", *args], env=blocked, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    knn = ("eval", "knn", str(run_dir), "eval.k=10", "eval.limit_train=200", "eval.limit_eval=100")
    assert 0.0 <= json.loads(sslcore(*knn))["knn_top1"] <= 100.0
    assert sslcore("export", str(run_dir), str(tmp_path / "b.safetensors")).startswith("wrote ")
    # An export without metadata (an older run) is rebuilt from recipe.toml's [backbone] table.
    path = run_dir / "backbone.safetensors"
    save_file(load_file(str(path)), str(path))
    assert 0.0 <= json.loads(sslcore(*knn))["knn_top1"] <= 100.0
