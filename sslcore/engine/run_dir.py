"""The run directory's rules, checked before a run writes anything into it.

- One run at a time: the main process holds an exclusive ``flock`` on ``RUN_DIR/.lock`` for the whole run (the
  operating system releases it when the process dies, so a killed run leaves no stale lock).
- A resume keeps the recipe: the new resolved recipe is compared with the saved ``recipe.toml``; changes to keys
  outside :data:`HARMLESS` (the model, data, optimizer, schedule, length, global batch) are refused, the harmless
  ones (logging, checkpoint cadence, progress, workers, trackers, evaluation) are named and allowed.
- A finished run (``summary.json``) whose checkpoints are gone is not retrained unless ``run.resume = "never"``.
- ``run.resume = "never"`` starts over: the previous checkpoints and results are deleted first.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from sslcore.console import out
from sslcore.engine import checkpoint
from sslcore.errors import SslcoreError
from sslcore.plugins import PluginHost
from sslcore.recipe import Recipe, read_toml, resolve_document, write_resolved

LOCK_FILE = ".lock"
RECIPE_FILE = "recipe.toml"
SUMMARY_FILE = "summary.json"
#: Recipe keys (TOML paths; a table covers its keys) a resumed run may change: they do not touch the training state.
HARMLESS = ("run.name", "run.output_dir", "run.resume", "run.log_every", "run.eval_every", "run.checkpoint_every",
            "run.keep_checkpoints", "run.progress", "run.num_workers", "run.trackers", "eval",
            "run.channels_last", "run.compile",  # how the step computes, not what (sslcore.engine.compute)
            "data.corrupt")  # skipping corrupt rows changes no step already taken (each stopped at its first one)
#: What ``run.resume = "never"`` deletes before starting over (besides ``checkpoints/``).
PREVIOUS_RESULTS = (SUMMARY_FILE, "curves.png", "backbone.safetensors", "backbone_*.safetensors",
                    "trackers.json")  # a run started over is a new tracker run


def changed_keys(saved: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """TOML paths whose values differ between two recipe documents (a table only one has is one path)."""
    changed = []
    for key in sorted(saved.keys() | new.keys()):
        path, old, value = f"{prefix}{key}", saved.get(key), new.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            changed += changed_keys(old, value, f"{path}.")
        elif old != value:
            changed.append(path)
    return changed


def is_harmless(path: str) -> bool:
    return any(path == key or path.startswith(key + ".") for key in HARMLESS)


@contextmanager
def run_lock(run_dir: Path) -> Iterator[IO[str]]:
    """Hold ``run_dir/.lock`` exclusively, or raise naming the directory (and the holder's process)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = (run_dir / LOCK_FILE).open("a+")
    except OSError as error:
        raise SslcoreError(f"cannot write the run directory ({error.strerror})", where=str(run_dir),
                           hint="make it writable, or choose another run.output_dir") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SslcoreError(f"the run directory is in use by another run ({holder})", where=str(run_dir),
                               hint="wait for that run to finish, or give this one another run.name") from None
        handle.truncate(0)
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield handle  # closing the file releases the lock


def prepare(recipe: Recipe, run_dir: Path, host: PluginHost) -> None:
    """Check the run directory against ``recipe`` and write the resolved recipe (main process, under the lock)."""
    resume = recipe.run.resume
    if resume == "never":
        if checkpoint.checkpoint_dir(run_dir).exists():
            shutil.rmtree(checkpoint.checkpoint_dir(run_dir))
        for pattern in PREVIOUS_RESULTS:
            for path in run_dir.glob(pattern):
                path.unlink()
    else:
        resume_from = checkpoint.resolve_resume(run_dir, resume)
        finished = (run_dir / SUMMARY_FILE).is_file()
        if resume_from is None and finished:
            raise SslcoreError(
                "this run finished (summary.json) and has no checkpoint left to resume; training again would overwrite "
                "its results",
                where=str(run_dir),
                hint="give the new run another run.name, or set run.resume=never to train this one again from scratch",
            )
        saved = run_dir / RECIPE_FILE
        if (resume_from is not None or finished) and saved.is_file():
            _compare(recipe, saved, host)
    write_resolved(recipe, run_dir)


def _compare(recipe: Recipe, saved: Path, host: PluginHost) -> None:
    """Refuse a recipe that differs from the saved one in a key the checkpoint depends on; name harmless changes.

    The saved recipe is resolved again first, so that a key added to sslcore since it was written counts as
    unchanged when the new recipe has its default (as it is, unresolved, if it no longer resolves)."""
    document = read_toml(saved)
    with suppress(SslcoreError):
        document = tomllib.loads(resolve_document(document, str(saved), host).to_toml())
    changed = changed_keys(document, tomllib.loads(recipe.to_toml()))
    harmless = [key for key in changed if is_harmless(key)]
    breaking = [key for key in changed if not is_harmless(key)]
    if breaking:
        raise SslcoreError(
            f"the recipe differs from the run's {saved.name} in {', '.join(breaking)}, which its checkpoint depends on"
            + (f" (harmless changes: {', '.join(harmless)})" if harmless else ""),
            where=str(saved.parent),
            hint="undo those changes to resume, give the new run another run.name, or set run.resume=never to start "
                 "this run over",
        )
    if harmless:
        out.print(f"resuming with harmless recipe changes: {', '.join(harmless)}")


@contextmanager
def claim(accelerator: Accelerator, recipe: Recipe, run_dir: Path, host: PluginHost) -> Iterator[None]:
    """Lock and :func:`prepare` ``run_dir`` on the main process for the duration of the block. If the main process
    refuses the run, it raises the error and the other processes exit with code 2 without a message (the same rule
    as :func:`sslcore.engine.checkpoint.raise_once`), so a run on several processes reports it once."""
    with ExitStack() as held:
        failure: Exception | None = None
        if accelerator.is_main_process:
            try:
                held.enter_context(run_lock(run_dir))
                prepare(recipe, run_dir, host)
            except Exception as error:  # the other processes must hear of any failure, or they wait forever
                failure = error
        refused = [failure is not None]
        if accelerator.num_processes > 1:
            broadcast_object_list(refused)
        if failure is not None:
            raise failure
        if refused[0]:
            raise SystemExit(2)
        yield
