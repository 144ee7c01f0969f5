"""Helpers for engine tests: recipes and subprocess runs (imported by name: conftest modules share one name)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


HERE = Path(__file__).parent
CIFAR = HERE.parents[1].parent / "shared" / "data" / "cifar10"

RECIPE = """
[run]
name = "r"
output_dir = "{out}"
steps = {steps}
batch_size = {batch}
num_workers = 0
log_every = 1
checkpoint_every = {checkpoint_every}
deterministic = true
progress = false

[data]
{data}

[views]
kind = "simclr"
size = 32

[backbone]
kind = "timm"
name = "{backbone}"
{backbone_extra}

[heads.projector]
kind = "mlp"
num_layers = 2
hidden_dim = 32
out_dim = 16

{store}

[method]
kind = "pairwise"
{method_extra}

[optimizer]
kind = "sgd"
base_lr = 0.1

{eval}
"""
SIMCLR_STORE = '[key_store]\nkind = "in_batch"\n\n[loss]\nkind = "ntxent"\ntemperature = 0.2'
MOCO_STORE = ('[key_store]\nkind = "queue"\nsize = 64\n\n[loss]\nkind = "infonce"\ntemperature = 0.2\n\n'
              '[target_updater]\nkind = "ema"\nbase_momentum = 0.9')
DIGITS = 'kind = "digits"'
VIT = 'img_size = 32'


def recipe_text(out: Path, *, steps: int = 4, batch: int = 16, checkpoint_every: int = 0, data: str = DIGITS,
                backbone: str = "resnet18", backbone_extra: str = "", store: str = SIMCLR_STORE,
                method_extra: str = "", evaluate: bool = False) -> str:
    eval_table = '[eval]\nkind = "knn"\nk = 20\nlimit_train = 500\nlimit_eval = 200' if evaluate else ""
    return RECIPE.format(out=out, steps=steps, batch=batch, checkpoint_every=checkpoint_every, data=data,
                         backbone=backbone, backbone_extra=backbone_extra, store=store, method_extra=method_extra,
                         eval=eval_table)


def run_sslcore(args: list[str], env: dict[str, str], *, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sslcore.run", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def accelerate_launch(args: list[str], env: dict[str, str], *, timeout: int = 300,
                      processes: int = 2) -> subprocess.CompletedProcess:
    """``accelerate launch -m sslcore.run ARGS`` on the CPU with ``processes`` gloo processes."""
    multi = ["--multi_gpu"] if processes > 1 else []
    launcher = [sys.executable, "-m", "accelerate.commands.launch", *multi, "--num_processes", str(processes),
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    return subprocess.run([*launcher, "-m", "sslcore.run", *args], env=dict(env, ACCELERATE_USE_CPU="1"),
                          capture_output=True, text=True, timeout=timeout)


def sslcore_launch(args: list[str], env: dict[str, str], *, timeout: int = 300) -> subprocess.CompletedProcess:
    """``sslcore launch --cpu --num_processes 2 ARGS``: two gloo processes through sslcore's launcher wrapper."""
    launcher = [sys.executable, "-m", "sslcore.cli", "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    return subprocess.run([*launcher, *args], env=env, capture_output=True, text=True, timeout=timeout)
