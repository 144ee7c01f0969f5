"""Faults outside the recipe: damaged checkpoints, unwritable places, a full disk, a changed number of processes and a
divergence each end in one line (exit code 2) that says what, where and what to do, and lose nothing."""

from __future__ import annotations

import errno
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import engine_test_plugin
import pytest
import torch
from accelerate import Accelerator
from engine_support import accelerate_launch, recipe_text, sslcore_launch

from sslcore import cli
from sslcore.engine import trainer as trainer_module
from sslcore.engine.checkpoint import list_checkpoints
from sslcore.engine.trainer import Trainer
from sslcore.errors import SslcoreError
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve

def host(**options: Any) -> PluginHost:
    """The built-ins and the test method only (``options``: what the CLI passes, e.g. allow_clashes)."""
    return PluginHost(autoload=False, extra_plugins=[("pairwise", engine_test_plugin)], **options)


def train(recipe: Path | str, *overrides: str) -> dict:
    plugins = host()
    return Trainer(resolve(str(recipe), plugins, overrides), plugins).fit()


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "loss" in r}


def steps(run_dir: Path) -> list[int]:
    return [step for step, _ in list_checkpoints(run_dir)]


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """``sslcore ARGS`` in this process (with the test method plugin): its exit code and its stderr."""
    monkeypatch.setattr(cli, "PluginHost", host)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    return exited.value.code, capsys.readouterr().err


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    """4 steps with checkpoints at 2 and 4 (the final one)."""
    path = tmp_path / "r.toml"
    path.write_text(recipe_text(tmp_path / "out", steps=4, batch=8, checkpoint_every=2))
    return path


# -- damaged checkpoints ------------------------------------------------------------------------------------------
def empty(path: Path) -> None:
    path.write_bytes(b"")


def garbage(path: Path) -> None:
    """The same number of bytes, none of them right: what the manifest cannot see, loading does."""
    size = path.stat().st_size
    path.write_bytes((b"\x00not a pickle" * size)[:size])


@pytest.mark.parametrize("damage, file, said", [
    (Path.unlink, "pytorch_model.bin", "pytorch_model.bin is missing"),
    (empty, "optimizer.bin", "optimizer.bin has 0 bytes, not "),
    (garbage, "custom_checkpoint_0.pkl", "cannot be read (UnpicklingError"),
])
def test_a_damaged_latest_checkpoint_is_reported_and_the_previous_one_resumed(recipe, tmp_path, capsys, damage,
                                                                            file, said):
    run_dir = tmp_path / "out" / "r"
    train(recipe)
    straight = losses(run_dir)
    damage(run_dir / "checkpoints" / "step_00000004" / file)
    (run_dir / "summary.json").unlink()
    capsys.readouterr()
    train(recipe)
    printed = capsys.readouterr().out
    assert re.search(rf"skipping checkpoint \S+step_00000004: .*{re.escape(said)}.*; trying the previous one", printed)
    assert f"resumed from {run_dir / 'checkpoints' / 'step_00000002'} at step 2" in printed
    assert losses(run_dir) == straight


def half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_checkpoint_written_before_manifests_existed_resumes_exactly(recipe, tmp_path, capsys):
    """sslcore wrote no manifest.json before; such a checkpoint resumes, its files checked by what they are."""
    run_dir = tmp_path / "out" / "r"
    train(recipe)
    straight = losses(run_dir)
    checkpoints = run_dir / "checkpoints"
    for step in ("step_00000002", "step_00000004"):
        (checkpoints / step / "manifest.json").unlink()
    half(checkpoints / "step_00000004" / "optimizer.bin")  # a damaged one without a manifest is still found
    (run_dir / "summary.json").unlink()
    capsys.readouterr()
    train(recipe)
    printed = capsys.readouterr().out
    assert (f"skipping checkpoint {checkpoints / 'step_00000004'}: optimizer.bin is truncated or not a file torch "
            "wrote (the checkpoint has no manifest.json); trying the previous one") in printed
    assert f"resumed from {checkpoints / 'step_00000002'} at step 2" in printed
    assert losses(run_dir) == straight


def test_without_a_usable_checkpoint_the_error_names_the_directory_to_remove(recipe, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "out" / "r"
    train(recipe)
    (run_dir / "checkpoints" / "step_00000004" / "manifest.json").unlink()  # as before manifests, then truncated:
    half(run_dir / "checkpoints" / "step_00000004" / "optimizer.bin")
    empty(run_dir / "checkpoints" / "step_00000002" / "pytorch_model.bin")
    code, stderr = run_cli(["run", str(recipe)], monkeypatch, capsys)
    line = one_line(stderr)
    assert code == 2
    assert "no usable checkpoint: step_00000004, step_00000002" in line
    assert f"remove {run_dir / 'checkpoints'} to train from the start" in line


def test_a_damaged_checkpoint_named_by_run_resume_is_an_error(recipe, tmp_path):
    run_dir = tmp_path / "out" / "r"
    train(recipe)
    chosen = run_dir / "checkpoints" / "step_00000004"
    empty(chosen / "random_states_0.pkl")
    with pytest.raises(SslcoreError, match=rf"checkpoint {chosen} is incomplete or damaged: random_states_0.pkl "
                                           r"has 0 bytes.*run.resume=auto"):
        train(recipe, f"run.resume={chosen}")


# -- unwritable places and a full disk ----------------------------------------------------------------------------
@pytest.mark.parametrize("code, strerror", [(errno.ENOSPC, "No space left on device"),
                                            (errno.EROFS, "Read-only file system")])
def test_a_checkpoint_that_cannot_be_written_is_removed_and_reported_in_one_line(recipe, tmp_path, monkeypatch,
                                                                                capsys, code, strerror):
    """The disk fills (or turns read-only) in the middle of the second checkpoint: what was written of it goes, the
    first stays the latest, the line says what to do."""
    save_state = Accelerator.save_state

    def failing(self, output_dir, **kwargs):
        if output_dir.endswith("step_00000004"):
            Path(output_dir).mkdir()
            (Path(output_dir) / "pytorch_model.bin").write_bytes(b"\x00" * 4096)
            raise OSError(code, strerror)
        return save_state(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", failing)
    run_dir = tmp_path / "out" / "r"
    exit_code, stderr = run_cli(["run", str(recipe)], monkeypatch, capsys)
    line = one_line(stderr)
    assert exit_code == 2
    assert f"could not write checkpoint step_00000004 ({strerror}); removed what was written of it" in line
    assert "run the same command again to resume from step_00000002" in line
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000002"]


def test_an_unwritable_run_directory_late_in_a_run_is_one_line(recipe, tmp_path, monkeypatch, capsys):
    def read_only(path: Path, _summary: dict) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(trainer_module, "write_summary", read_only)
    code, stderr = run_cli(["run", str(recipe)], monkeypatch, capsys)
    assert code == 2
    assert one_line(stderr) == (f"error: {tmp_path / 'out' / 'r' / 'summary.json'}: permission denied; make that place "
                                "writable or write elsewhere (run.output_dir)")


def test_export_onto_the_runs_own_backbone_or_into_a_read_only_place_is_one_line(tmp_path, monkeypatch, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=1, batch=8))
    train(recipe)
    run_dir = tmp_path / "out" / "r"
    backbone = run_dir / "backbone.safetensors"
    before = backbone.read_bytes()
    code, stderr = run_cli(["export", str(run_dir), str(backbone)], monkeypatch, capsys)
    assert code == 2
    assert f"{run_dir}: '{backbone}' is the run's own backbone.safetensors" in one_line(stderr)
    assert backbone.read_bytes() == before
    if Path("/sys/kernel").is_dir():  # sysfs: no one, not even root, creates files there
        code, stderr = run_cli(["export", str(run_dir), "/sys/sslcore-test.safetensors"], monkeypatch, capsys)
        assert code == 2
        assert "cannot write the export" in one_line(stderr) and "/sys/sslcore-test.safetensors" in stderr


# -- several processes --------------------------------------------------------------------------------------------
@pytest.mark.distributed
def test_a_changed_number_of_processes_or_an_indivisible_batch_is_reported_once(tmp_path):
    """instdisc_smoke's memory bank is sharded per process: a checkpoint of one process cannot resume on two."""
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    args = ["instdisc_smoke", "run.steps=1", "data.size=16", "views.size=16", "eval.transform.size=16",
            f"run.output_dir={tmp_path}"]
    plugins = PluginHost()
    Trainer(resolve(args[0], plugins, args[1:]), plugins).fit()
    launched = accelerate_launch(args, env)
    combined = launched.stdout + launched.stderr
    message = "holds the sharded key stores of 1 process, but this run has 2"
    assert combined.count(message) == 1 and combined.count("error: ") == 1, combined[-3000:]
    # Each process exits with code 2. The launcher then raises ChildFailedError (its own traceback, exit code 1):
    # torch's elastic agent does so whenever a process fails, whatever its exit code.
    assert re.findall(r"exitcode\s+: (\d+)", combined) == ["2", "2"], combined[-3000:]
    assert combined.count("Traceback (most recent call last)") == 1 and launched.returncode == 1
    # sslcore launch exits with the processes' code 2 (both had it) and adds nothing to their one line.
    launched = sslcore_launch([*args, "run.batch_size=15", "run.name=odd"], env)
    assert launched.returncode == 2, launched.stderr[-3000:]
    assert launched.stderr.count("error: ") == 1 and "Traceback" not in launched.stderr, launched.stderr[-3000:]
    assert "run.batch_size = 15 does not divide over 2 processes" in launched.stderr


# -- divergence ---------------------------------------------------------------------------------------------------
def test_a_non_finite_loss_says_how_to_restart_from_the_newest_checkpoint(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=6, batch=8, checkpoint_every=2,
                                  method_extra="nan_at_step = 3"))
    with pytest.raises(SslcoreError) as stopped:
        train(recipe)
    newest = tmp_path / "out" / "r" / "checkpoints" / "step_00000002"
    assert f"run.resume={newest}" in str(stopped.value) and "run.resume=never" in str(stopped.value)


def test_non_finite_weights_are_never_checkpointed_and_the_hinted_restart_works(tmp_path, monkeypatch):
    """The loss of step 4 is finite, but its update leaves the weights non-finite: the checkpoint of step 4 is not
    written, so the newest checkpoint the error names (step 2) is finite, and restarting from it trains on."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=6, batch=8, checkpoint_every=2))
    step = Trainer._step

    def diverging(self, raw, info):
        output = step(self, raw, info)
        if info.step == 3:
            with torch.no_grad():
                next(self.method.parameters()).fill_(float("inf"))
        return output

    monkeypatch.setattr(Trainer, "_step", diverging)
    with pytest.raises(SslcoreError, match="the weights became non-finite by step 4") as stopped:
        train(recipe)
    run_dir = tmp_path / "out" / "r"
    assert steps(run_dir) == [2]
    newest = run_dir / "checkpoints" / "step_00000002"
    assert f"run.name=NEW run.resume={newest}" in str(stopped.value)
    monkeypatch.undo()
    summary = train(recipe, "run.name=NEW", f"run.resume={newest}")
    assert summary["steps"] == 6 and all(map(math.isfinite, losses(tmp_path / "out" / "NEW").values()))
