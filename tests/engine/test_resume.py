"""Interrupt, crash and resume: the losses after a resume equal those of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from engine_support import MOCO_STORE, accelerate_launch, recipe_text, run_sslcore

from sslcore.engine.checkpoint import latest_checkpoint, list_checkpoints


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "loss" in r}


def test_sigterm_saves_and_resume_reproduces_an_uninterrupted_queue_run(tmp_path, plugin_env):
    steps = 14
    for name in ("straight", "interrupted"):
        (tmp_path / f"{name}.toml").write_text(recipe_text(tmp_path / name, steps=steps, store=MOCO_STORE))
    straight = run_sslcore([str(tmp_path / "straight.toml")], plugin_env)
    assert straight.returncode == 0, straight.stderr

    metrics = tmp_path / "interrupted" / "r" / "metrics.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "sslcore.run", str(tmp_path / "interrupted.toml")],
                               env=plugin_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stdout
    stopped_at = list_checkpoints(tmp_path / "interrupted" / "r")[-1][0]
    assert 3 <= stopped_at < steps

    resumed = run_sslcore([str(tmp_path / "interrupted.toml")], plugin_env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {stopped_at}" in resumed.stdout
    expected, got = losses(tmp_path / "straight" / "r"), losses(tmp_path / "interrupted" / "r")
    assert sorted(got) == list(range(1, steps + 1))
    assert {s: got[s] for s in range(stopped_at + 1, steps + 1)} == {
        s: expected[s] for s in range(stopped_at + 1, steps + 1)
    }


CRASH_DURING_SECOND_CHECKPOINT = """
import os, signal, sys
from accelerate import Accelerator
calls = []
original = Accelerator.save_state
def save_state(self, output_dir=None, **kwargs):
    calls.append(output_dir)
    if len(calls) == 2:  # write part of the second checkpoint, then die as if killed
        os.makedirs(output_dir, exist_ok=True)
        open(os.path.join(output_dir, "model.bin"), "wb").write(b"partial")
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, output_dir, **kwargs)
Accelerator.save_state = save_state
from sslcore.cli import main
main(["run", sys.argv[1]])
"""


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, plugin_env):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=6, checkpoint_every=2, store=MOCO_STORE))
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(CRASH_DURING_SECOND_CHECKPOINT))
    crashed = subprocess.run([sys.executable, str(script), str(recipe)], env=plugin_env, capture_output=True,
                             text=True, timeout=240)
    assert crashed.returncode == -signal.SIGKILL
    run_dir = tmp_path / "out" / "r"
    assert latest_checkpoint(run_dir).name == "step_00000002"
    resumed = run_sslcore([str(recipe)], plugin_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 2" in resumed.stdout
    assert not any(p.name.startswith(".partial") for p in (run_dir / "checkpoints").iterdir())


def test_a_non_finite_loss_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, plugin_env):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=6, checkpoint_every=2, method_extra="nan_at_step = 3"))
    result = run_sslcore([str(recipe)], plugin_env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "non-finite" in lines[0] and "at step 3" in lines[0]
    assert latest_checkpoint(tmp_path / "out" / "r").name == "step_00000002"


def test_two_process_resume_restores_each_ranks_own_queue_shard(tmp_path, plugin_env):
    """A per-rank (sharded) queue differs between ranks; each rank's shard comes back from its own file."""


    store = MOCO_STORE.replace('size = 64', 'size = 64\nsharding = "sharded"')
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=5, checkpoint_every=3, store=store))
    first = accelerate_launch([str(recipe)], plugin_env)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "out" / "r"
    straight = losses(run_dir)
    step3 = run_dir / "checkpoints" / "step_00000003"
    assert sorted(p.name for p in step3.glob("sharded_state_rank*.pt")) == [
        "sharded_state_rank0.pt", "sharded_state_rank1.pt"]
    for path in run_dir.glob("checkpoints/step_00000005"):
        import shutil

        shutil.rmtree(path)
    again = accelerate_launch([str(recipe)], plugin_env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "at step 3" in again.stdout
    resumed = losses(run_dir)
    assert {s: resumed[s] for s in (4, 5)} == {s: straight[s] for s in (4, 5)}
