"""The run directory's rules: nothing a run wrote is lost to a second run, a changed recipe, an odd run name, a
deleted checkpoint or a torn metrics line."""

from __future__ import annotations

import fcntl
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import engine_test_plugin
import pytest
from engine_support import recipe_text

from sslcore.engine.run_log import MetricsLog
from sslcore.engine.trainer import Trainer
from sslcore.errors import SslcoreError
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve

KEPT = ("recipe.toml", "summary.json", "metrics.jsonl", "backbone.safetensors")


def host() -> PluginHost:
    return PluginHost(autoload=False, extra_plugins=[("pairwise", engine_test_plugin)])


def train(recipe: Path, *overrides: str) -> dict:
    plugins = host()
    return Trainer(resolve(str(recipe), plugins, overrides), plugins).fit()


def finished_run(tmp_path: Path, **options) -> tuple[Path, Path]:
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=2, batch=8, **options))
    train(recipe)
    return recipe, tmp_path / "out" / "r"


def losses(metrics: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, metrics.read_text().splitlines()) if "loss" in r}


def contents(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in KEPT}


def test_a_resume_with_a_recipe_the_checkpoint_does_not_fit_is_refused_before_anything_is_written(tmp_path):
    recipe, run_dir = finished_run(tmp_path)
    before = contents(run_dir)
    for overrides, named in ((["heads.projector.out_dim=8"], "in heads.projector.out_dim, which"),
                             (["backbone.name=resnet10t", "optimizer.kind=adamw", "run.log_every=2"],
                              "in backbone.name, optimizer.kind, which its checkpoint depends on (harmless changes: "
                              "run.log_every)"),
                             (["run.batch_size=16"], "in run.batch_size, which")):
        with pytest.raises(SslcoreError, match="run.resume=never") as refused:
            train(recipe, *overrides)
        assert named in str(refused.value) and str(run_dir) in str(refused.value)
        assert contents(run_dir) == before


def test_harmless_recipe_changes_are_allowed_and_named(tmp_path, capsys):
    recipe, run_dir = finished_run(tmp_path)
    saved = run_dir / "recipe.toml"  # as if written before [optimizer] lr_scaling existed: its default is no change
    text = saved.read_text()
    assert 'lr_scaling = "linear"\n' in text
    saved.write_text(text.replace('lr_scaling = "linear"\n', ""))
    evaluated = tmp_path / "evaluated.toml"
    evaluated.write_text(recipe_text(tmp_path / "out", steps=2, batch=8, evaluate=True))
    capsys.readouterr()
    train(evaluated, "run.log_every=2", "run.keep_checkpoints=1", "run.num_workers=1")
    assert ("resuming with harmless recipe changes: eval, run.keep_checkpoints, run.log_every, run.num_workers"
            in capsys.readouterr().out)
    assert "log_every = 2" in (run_dir / "recipe.toml").read_text()


def hold_lock(path: Path):
    handle = path.open("a")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def test_a_run_directory_in_use_is_refused_and_a_killed_runs_lock_is_not(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=2, batch=8))
    run_dir = tmp_path / "out" / "r"
    run_dir.mkdir(parents=True)
    with hold_lock(run_dir / ".lock"):
        with pytest.raises(SslcoreError, match="in use by another run") as refused:
            train(recipe)
        assert str(run_dir) in str(refused.value)
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    # a run killed while holding the lock does not block the next one: the OS releases a dead process's flock
    killer = ("import fcntl, os, signal, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
              "os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", killer, str(run_dir / ".lock")]).returncode == -9
    assert train(recipe)["steps"] == 2


TWO_PROCESSES = """
import sys
from accelerate import PartialState
from sslcore.cli import main
assert PartialState(cpu=True).num_processes == 2
main(["run", sys.argv[1]])
"""


@pytest.mark.distributed
def test_a_refused_run_exits_2_on_every_process_and_is_reported_once(tmp_path, plugin_env):
    """Each rank started by hand (a launcher stops the others once one exits): only process 0 takes the lock and
    reports the refusal, the other learns of it from process 0."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=2, batch=8))
    script = tmp_path / "two.py"
    script.write_text(TWO_PROCESSES)
    run_dir = tmp_path / "out" / "r"
    run_dir.mkdir(parents=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(plugin_env, ACCELERATE_USE_CPU="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2")
    with hold_lock(run_dir / ".lock"):
        ranks = [subprocess.Popen([sys.executable, str(script), str(recipe)], env=dict(env, RANK=r, LOCAL_RANK=r),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in ("0", "1")]
        errors = [rank.communicate(timeout=300)[1] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [2, 2], errors
    assert "Traceback" not in errors[0] + errors[1], errors
    assert "in use by another run" in errors[0] and "error:" not in errors[1], errors  # reported once
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]


@pytest.mark.parametrize("name", ["", " ", ".", "..", "a/b", "/tmp/elsewhere"])
def test_a_run_name_must_be_one_directory_name(tmp_path, name):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out"))
    with pytest.raises(SslcoreError, match=r"\[run\.name\]: must be one directory name"):
        resolve(str(recipe), host(), [f"run.name={name}"])


def test_a_finished_run_without_checkpoints_is_not_retrained_unless_it_starts_over(tmp_path):
    recipe, run_dir = finished_run(tmp_path, checkpoint_every=1)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000001", "step_00000002"]
    shutil.rmtree(run_dir / "checkpoints")
    before = contents(run_dir)
    with pytest.raises(SslcoreError, match="another run.name, or set run.resume=never"):
        train(recipe)
    assert contents(run_dir) == before
    # the explicit start over; the previous checkpoints go, so none is taken for the new run's latest
    (run_dir / "checkpoints" / "step_00000099").mkdir(parents=True)
    train(recipe, "run.resume=never")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000001", "step_00000002"]


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=4, batch=8, checkpoint_every=2))
    run_dir = tmp_path / "out" / "r"
    train(recipe)
    metrics = run_dir / "metrics.jsonl"
    straight = losses(metrics)
    shutil.rmtree(run_dir / "checkpoints" / "step_00000004")  # as if killed while writing step 4's record
    (run_dir / "summary.json").unlink()
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:3]) + '{"step": 4, "epoch": 0, "lo')
    capsys.readouterr()
    train(recipe)
    output = capsys.readouterr().out
    assert "dropped a torn last line" in output and "at step 2" in output
    assert losses(metrics) == straight


def test_a_broken_line_before_the_last_is_an_error_naming_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(SslcoreError, match=r"metrics.jsonl: line 2 is not a JSON record"):
        MetricsLog(path).read()
