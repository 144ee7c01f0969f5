"""Acceptance: a recipe with two named backbones trains, checkpoints, resumes exactly, exports both encoders, and
the kNN monitor evaluates their concatenated features (the method in two_encoders_plugin.py, installed as a fake
distribution for ``python -m sslcore.run``)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

import two_encoders_plugin
from sslcore.cli import main
from sslcore.evaluation.offline import evaluate_run
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve

STEPS = 5
RECIPE = """\
[run]
name = "r"
output_dir = "{out}"
steps = {steps}
batch_size = 16
num_workers = 0
log_every = 1
checkpoint_every = 2
keep_checkpoints = 5
deterministic = true
progress = false

[data]
kind = "digits"

[views]
kind = "simclr"
size = 32

[backbones.a]
kind = "timm"
name = "resnet18"

[backbones.b]
kind = "timm"
name = "vit_tiny_patch16_224"
img_size = 32

[heads.a]
kind = "mlp"
num_layers = 2
hidden_dim = 32
out_dim = 16

[heads.b]
kind = "mlp"
num_layers = 2
hidden_dim = 32
out_dim = 16

[method]
kind = "two_encoders"

[optimizer]
kind = "sgd"
base_lr = 0.1

[eval]
kind = "knn_width"
k = 10
limit_train = 200
limit_eval = 100
num_workers = 0
"""


def _env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    info = site / "two_encoders-0.1.dist-info"
    info.mkdir(parents=True)
    shutil.copy(Path(two_encoders_plugin.__file__), site / "two_encoders_plugin.py")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: two-encoders\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sslcore]\ntwo_encoders = two_encoders_plugin\n")
    installed = {ep.name for ep in importlib.metadata.entry_points(group="sslcore")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSLCORE_")}
    return dict(env, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(site),
                SSLCORE_BLOCK_PLUGINS=",".join(sorted(installed)))  # only the built-ins and this plugin


def _train(recipe: Path, env: dict[str, str], *overrides: str) -> str:
    done = subprocess.run([sys.executable, "-m", "sslcore.run", str(recipe), *overrides], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_named_backbones_train_resume_export_and_evaluate(tmp_path: Path) -> None:
    env = _env(tmp_path)
    recipe = tmp_path / "two.toml"
    recipe.write_text(RECIPE.format(out=tmp_path / "straight", steps=STEPS))
    _train(recipe, env)
    straight = tmp_path / "straight" / "r"

    # Resume from the step-2 checkpoint in a copy of the run: the later losses are those of the uninterrupted run.
    resumed = tmp_path / "resumed" / "r"
    later = shutil.ignore_patterns("summary.json", "*.safetensors", "step_0000000[3-9]")
    shutil.copytree(straight, resumed, ignore=later)
    kept = [line for line in (resumed / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] <= 2]
    (resumed / "metrics.jsonl").write_text("\n".join(kept) + "\n")
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["step_00000002"]
    stdout = _train(recipe, env, f"run.output_dir={tmp_path / 'resumed'}",
                    f"run.resume={resumed / 'checkpoints' / 'step_00000002'}")
    assert "at step 2" in stdout
    losses = [{r["step"]: r["loss"] for r in _records(run) if "loss" in r} for run in (straight, resumed)]
    assert sorted(losses[0]) == sorted(losses[1]) == list(range(1, STEPS + 1))
    assert losses[1] == losses[0]

    # One file per encoder, each loading strictly into the backbone its table builds.
    assert not (straight / "backbone.safetensors").exists()
    host = PluginHost(autoload=False, extra_plugins=[("two_encoders", two_encoders_plugin)])
    resolved = resolve(str(straight / "recipe.toml"), host)
    widths = 0
    for name in ("a", "b"):
        backbone = resolved.components[f"backbones.{name}"].build()
        backbone.load_state_dict(load_file(str(straight / f"backbone_{name}.safetensors")), strict=True)
        widths += backbone.num_features
    assert widths == 512 + 192

    # The kNN monitor saw the concatenated features, before and after training.
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["feature_width"] == summary["feature_width_init"] == widths
    assert 0 <= summary["knn_top1"] <= 100

    # `sslcore export` writes both encoders.
    main(["export", str(straight), str(tmp_path / "exported" / "enc.safetensors")])
    exported = sorted(p.name for p in (tmp_path / "exported").iterdir())
    assert exported == ["enc_a.safetensors", "enc_b.safetensors"]
    for name in ("a", "b"):
        original = load_file(str(straight / f"backbone_{name}.safetensors"))
        copied = load_file(str(tmp_path / "exported" / f"enc_{name}.safetensors"))
        assert original.keys() == copied.keys() and all(torch.equal(original[k], copied[k]) for k in original)

    # `sslcore eval knn` evaluates the concatenated features of both exported encoders.
    results = evaluate_run(str(straight), "knn", ["eval.k=10", "eval.limit_train=200", "eval.limit_eval=100",
                                                  "eval.num_workers=0"], host)
    assert 0 <= results["knn_top1"] <= 100
