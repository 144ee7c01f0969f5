"""Several processes report a user error once and exit with code 2: under ``accelerate launch`` every process exits
with code 2 and one line is printed (the launcher then adds its own report); under ``sslcore launch`` the whole
command ends with that one line and code 2. A corrupt row that only one process reads stops every process."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from engine_support import accelerate_launch, recipe_text, sslcore_launch
from PIL import Image

from sslcore.console import exit_on_user_error
from sslcore.errors import SslcoreError

BAD_KEY = "unknown key 'batchsize'; did you mean 'batch_size'?"


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _recipe(tmp_path: Path, data: str = 'kind = "digits"') -> Path:
    path = tmp_path / "r.toml"
    path.write_text(recipe_text(tmp_path / "out", steps=3, batch=8, data=data))
    return path


def test_sslcore_launch_checks_the_recipe_before_any_process_starts(tmp_path, plugin_env):
    recipe = _recipe(tmp_path)
    launched = sslcore_launch([str(recipe), "run.batchsize=3"], plugin_env)
    assert launched.returncode == 2, launched.stderr
    assert launched.stderr.count("error: ") == 1 and BAD_KEY in launched.stderr, launched.stderr
    assert "Traceback" not in launched.stderr and "accelerate" not in launched.stdout + launched.stderr
    refused = sslcore_launch(["-m", "sslcore.run", str(recipe)], plugin_env)
    assert refused.returncode == 2 and "give the recipe, not -m" in refused.stderr, refused.stderr


@pytest.mark.distributed
def test_a_recipe_error_under_accelerate_launch_is_printed_once_and_every_process_exits_2(tmp_path, plugin_env):
    launched = accelerate_launch([str(_recipe(tmp_path)), "run.batchsize=3"], plugin_env)
    combined = launched.stdout + launched.stderr
    assert combined.count("error: ") == 1 and BAD_KEY in combined, combined[-3000:]
    # Both processes ran (the launcher reports each) and exited with code 2; the launcher's own report follows.
    assert re.findall(r"exitcode\s+: (\d+)", combined) == ["2", "2"], combined[-3000:]
    assert launched.returncode == 1


def test_a_process_other_than_the_first_reports_only_when_process_zero_does_not(monkeypatch, capsys):
    """Process 0 reports an error every process meets; another process waits for the launcher to stop it, and
    reports the error itself if no stop comes (process 0 did not meet it)."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr("sslcore.console.REPORT_WAIT_S", 0.0)
    with pytest.raises(SystemExit) as exited:
        exit_on_user_error(SslcoreError("only here", where="[data]"))
    assert exited.value.code == 2 and capsys.readouterr().err == "error: [data]: only here\n"


def _catches_sigterm(pid: int) -> bool:
    caught = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("SigCgt"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def test_the_waiting_process_exits_2_silently_when_the_launcher_stops_it(tmp_path):
    script = ("import sys; from sslcore.console import exit_on_user_error; from sslcore.errors import SslcoreError; "
              "print('waiting', flush=True); exit_on_user_error(SslcoreError('met everywhere'))")
    waiting = subprocess.Popen([sys.executable, "-c", script], env={"RANK": "1", "PATH": ""}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert waiting.stdout.readline() == "waiting\n"
    while not _catches_sigterm(waiting.pid):  # the process is waiting once it has its SIGTERM handler
        time.sleep(0.05)
    waiting.terminate()
    _, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 2 and stderr == ""


@pytest.mark.distributed
def test_a_corrupt_row_read_by_one_process_stops_every_process_with_one_line(tmp_path, plugin_env):
    """Batch 8 on two processes: process 1 reads positions 4-7 of the epoch's order at step 1, where the corrupt row
    lies; process 0 never reads it. The failure is deferred to the next log step (2), where the processes agree."""
    order = torch.randperm(32, generator=torch.Generator().manual_seed(0)).tolist()  # run.seed = 0, epoch 0
    bad = order[5]
    images = [b"not an image" if row == bad else _png(7 * row) for row in range(32)]
    pq.write_table(pa.table({"image": images, "label": [row % 4 for row in range(32)]}), tmp_path / "d.parquet")
    recipe = _recipe(tmp_path, data=f'kind = "parquet"\ntrain = "{tmp_path / "d.parquet"}"\ncorrupt = "fail"')
    launched = accelerate_launch([str(recipe), "run.log_every=2"], plugin_env)
    combined = launched.stdout + launched.stderr
    row = f"error: [data]: row {bad} of train '{tmp_path / 'd.parquet'}' is not a readable image"
    assert combined.count("error: ") == 1 and row in combined, combined[-3000:]
    assert re.findall(r"exitcode\s+: (\d+)", combined) == ["2", "2"], combined[-3000:]  # both processes, code 2
    assert combined.count("Traceback") == 1 and "gloo" not in combined.lower(), combined[-3000:]  # the launcher's
    assert not (tmp_path / "out" / "r" / "checkpoints").exists()
