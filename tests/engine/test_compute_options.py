"""``[run] channels_last``, ``compile`` and ``mixed_precision = "bf16"`` change how SimCLR's step computes, not what:
its first losses match the default run's (channels_last within 1e-5; compile within 1e-4, and 1e-4 relative after
updates; bf16 within 2%), a channels_last run resumes exactly, and a run saved compiled resumes uncompiled (the
parameter names never change)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from engine_support import run_sslcore
from safetensors.torch import load_file
from torch import nn

from sslcore.engine.compute import compile_networks, compiled_networks, eager
from sslcore.engine.trainer import Trainer
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import build_recipe

SMALL = [
    "run.steps=2",
    "run.log_every=1",
    "run.progress=false",
    "data.train_limit=64",
    "data.size=16",
    "views.size=16",
    "eval.transform.size=16",
    "eval.limit_train=32",
    "eval.limit_eval=16",
    "run.eval_every=0",
]


def run(tmp_path: Path, name: str, *overrides: str, recipe: str = "simclr_smoke") -> tuple[Trainer, dict[int, float]]:
    host = PluginHost()
    trainer = Trainer(
        resolve(recipe, host, [*SMALL, f"run.output_dir={tmp_path}", f"run.name={name}", *overrides]), host
    )
    trainer.fit()
    records = map(json.loads, (tmp_path / name / "metrics.jsonl").read_text().splitlines())
    return trainer, {r["step"]: r["loss"] for r in records if "loss" in r}


def first_conv(model: nn.Module) -> torch.Tensor:
    return next(m.weight for m in model.modules() if isinstance(m, nn.Conv2d))


def test_channels_last_gives_the_default_losses_and_resumes_exactly(tmp_path):
    _, default = run(tmp_path, "default")
    trainer, nhwc = run(tmp_path, "nhwc", "run.channels_last=true")
    assert first_conv(trainer.method).is_contiguous(memory_format=torch.channels_last)
    assert not first_conv(run(tmp_path, "plain", "run.steps=1")[0].method).is_contiguous(
        memory_format=torch.channels_last
    )
    assert sorted(nhwc) == [1, 2]
    assert nhwc == pytest.approx(default, abs=1e-5)

    longer = ["run.steps=4", "run.checkpoint_every=2", "run.channels_last=true"]
    _, straight = run(tmp_path, "resumed", *longer)
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step_00000004")
    (tmp_path / "resumed" / "summary.json").unlink()
    _, resumed = run(tmp_path, "resumed", *longer)
    assert {s: resumed[s] for s in (3, 4)} == {s: straight[s] for s in (3, 4)}
    exported = load_file(tmp_path / "resumed" / "backbone.safetensors")
    assert all(not key.startswith("_orig_mod") for key in exported)


def test_bf16_autocast_runs_on_the_cpu_within_two_percent(tmp_path):
    """In a process of its own: Accelerate keeps one precision per process."""
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = run_sslcore(
        ["simclr_smoke", *SMALL, f"run.output_dir={tmp_path}", "run.name=bf16", "run.mixed_precision=bf16"], env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = map(json.loads, (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines())
    bf16 = {r["step"]: r["loss"] for r in records if "loss" in r}
    _, default = run(tmp_path, "default")
    assert sorted(bf16) == [1, 2]
    assert bf16[1] != default[1]  # the forward did run in bfloat16
    assert bf16 == pytest.approx(default, rel=2e-2)


def test_compiled_networks_are_the_inner_ones_and_keep_their_parameter_names():
    host = PluginHost()
    _, moco = build_recipe("moco_smoke", host)
    networks = compiled_networks(moco)
    assert list(networks.values()) == [moco.backbone, moco.target]  # the online encoder holds the backbone
    assert sorted(networks) == ["encoder.backbone", "target"]
    _, simsiam = build_recipe("simsiam_smoke", host)
    assert list(compiled_networks(simsiam).values()) == [simsiam.backbone]  # its stop-gradient target wraps it
    names = list(moco.state_dict())
    compile_networks(moco)
    assert list(moco.state_dict()) == names
    assert moco.backbone._compiled_call_impl is not None
    with eager(moco):
        assert moco.backbone._compiled_call_impl is None
    assert moco.backbone._compiled_call_impl is not None


class DataDependent(nn.Module):
    """A branch on a value: no whole graph for torch.compile."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale if x.sum() > 0 else x


class Holder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = DataDependent()

    def exported_networks(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone}

    def followers(self) -> list:
        return []


def test_a_network_that_cannot_be_compiled_says_why_in_one_line_and_runs_uncompiled(capsys):
    holder = Holder()
    assert compile_networks(holder) == ["backbone"]
    x = torch.ones(3)
    assert torch.equal(holder.backbone(x), x * 2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run.compile: backbone (DataDependent) runs uncompiled, torch.")
    assert holder.backbone._compiled_call_impl is None
    assert torch.equal(holder.backbone(-x), -x)
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_compile_gives_the_default_losses_and_a_compiled_checkpoint_resumes_uncompiled(tmp_path, capsys):
    longer = ["run.steps=4", "run.checkpoint_every=2"]
    _, default = run(tmp_path, "default", *longer)
    _, compiled = run(tmp_path, "compiled", *longer, "run.compile=true")
    assert "uncompiled" not in capsys.readouterr().out
    assert {s: compiled[s] for s in (1, 2)} == pytest.approx({s: default[s] for s in (1, 2)}, abs=1e-4)
    assert compiled == pytest.approx(default, rel=1e-4)  # fused kernels round differently, and updates add it up

    model = torch.load(tmp_path / "compiled" / "checkpoints" / "step_00000002" / "pytorch_model.bin", weights_only=True)
    assert model and all("_orig_mod" not in key for key in model)
    shutil.rmtree(tmp_path / "compiled" / "checkpoints" / "step_00000004")
    (tmp_path / "compiled" / "summary.json").unlink()
    _, resumed = run(tmp_path, "compiled", *longer, "run.compile=false")
    assert "at step 2" in capsys.readouterr().out
    assert {s: resumed[s] for s in (3, 4)} == pytest.approx({s: default[s] for s in (3, 4)}, rel=1e-4)
