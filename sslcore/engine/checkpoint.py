"""Atomic checkpoints through Accelerate's state saving.

A checkpoint is written into ``checkpoints/.partial-step_N`` and renamed to ``checkpoints/step_N`` only once
every process has finished writing, so a crash mid-write leaves the previous checkpoint as the latest usable one.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from sslcore.errors import SslcoreError

_NAME = re.compile(r"^step_(\d+)$")
PARTIAL_PREFIX = ".partial-"


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def sharded_modules(method: nn.Module) -> dict[str, nn.Module]:
    """Submodules whose state differs per rank (key stores with ``sharding == "sharded"``)."""
    return {name: module for name, module in method.named_modules() if getattr(module, "sharding", None) == "sharded"}


def _shard_file(directory: Path, rank: int) -> Path:
    return directory / f"sharded_state_rank{rank}.pt"


def save_checkpoint(accelerator: Accelerator, run_dir: Path, step: int, keep: int, method: nn.Module) -> Path:
    """Save the full training state at ``step``; keep the newest ``keep`` checkpoints.

    Accelerate saves the model from the main process; state that differs per rank (sharded memory banks and
    queues) is saved by every rank into its own file beside it.
    """
    root = checkpoint_dir(run_dir)
    final = root / f"step_{step:08d}"
    partial = root / f"{PARTIAL_PREFIX}step_{step:08d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if partial.exists():
            shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial), safe_serialization=False)
    shards = sharded_modules(method)
    if shards:
        torch.save({name: module.state_dict() for name, module in shards.items()},
                   _shard_file(partial, accelerator.process_index))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        for _, old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old)
        for stale in root.glob(f"{PARTIAL_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, checkpoint: Path, method: nn.Module) -> None:
    """Restore a checkpoint written by :func:`save_checkpoint`, per-rank shards included."""
    shards = sharded_modules(method)
    for module in shards.values():
        module.defer_foreign_shard = True
    try:
        accelerator.load_state(str(checkpoint))
    finally:
        for module in shards.values():
            module.defer_foreign_shard = False
    if shards:
        path = _shard_file(checkpoint, accelerator.process_index)
        if not path.is_file():
            raise SslcoreError(
                f"checkpoint {checkpoint} has no sharded state for process {accelerator.process_index}",
                hint="resume with the number of processes that wrote it",
            )
        for name, state in torch.load(path, map_location="cpu", weights_only=True).items():
            shards[name].load_state_dict(state)


def resolve_resume(run_dir: Path, resume: str) -> Path | None:
    """The checkpoint to resume from: ``auto`` (latest in the run directory, or none), ``never``, or a path."""
    if resume == "never":
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    path = Path(resume)
    if not (path.is_dir() and _NAME.match(path.name)):
        raise SslcoreError(
            f"run.resume = '{resume}' is not a checkpoint directory",
            hint=f"use 'auto', 'never' or a path like {checkpoint_dir(run_dir) / 'step_00000100'}",
        )
    return path

