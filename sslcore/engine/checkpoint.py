"""Atomic, verified checkpoints through Accelerate's state saving.

A checkpoint is written into ``checkpoints/.partial-step_N``; once every process has written its part, the main
process writes ``manifest.json`` (each file's size) last and renames the directory to ``checkpoints/step_N``. A
crash leaves the previous checkpoint as the latest; a write that fails (a full disk, a read-only directory) removes
what it wrote. Only finite states are written. On resume, a checkpoint that does not match its manifest or cannot be
read is reported and skipped for the previous one.
"""

from __future__ import annotations

import errno
import json
import pickle
import re
import shutil
import zipfile
from pathlib import Path
from typing import NoReturn, TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn

from sslcore.console import exit_after_process_zero, out
from sslcore.errors import SslcoreError

_NAME = re.compile(r"^step_(\d+)$")
PARTIAL_PREFIX = ".partial-"
MANIFEST = "manifest.json"
_SHARDS = "sharded_state_rank*.pt"
_MODEL_FILES = ("pytorch_model.bin", "model.safetensors")
#: Files of a checkpoint that torch.save wrote (Accelerate's state, sharded key stores): zip archives.
_TORCH_SUFFIXES = (".bin", ".pkl", ".pt")
#: What a damaged file raises when read, beyond what the manifest finds (not RuntimeError, which torch's zip reader
#: raises but so does a state-dict mismatch, nor OSError: an unreadable file is not a damaged one).
_UNREADABLE = (EOFError, pickle.UnpicklingError)
T = TypeVar("T")


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Checkpoints of a run (renamed into place, not yet verified), oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def restart_hint(run_dir: Path) -> str:
    """How to train again after a divergence: from the newest checkpoint (all are finite), or from scratch."""
    latest = latest_checkpoint(run_dir)
    earlier = (f"restart from the newest checkpoint under another name (run.name=NEW run.resume={latest}; older ones "
               "lie beside it) or " if latest else "")
    return f"lower the learning rate or set run.grad_clip, then {earlier}start over (run.resume=never)"


def raise_once(accelerator: Accelerator, error: SslcoreError) -> NoReturn:
    """Raise ``error``, which every process meets at this point, on the main process only, so that a run on several
    processes reports it once; the others exit with code 2 (:func:`sslcore.console.exit_after_process_zero`)."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        raise error
    exit_after_process_zero()


def sharded_modules(method: nn.Module) -> dict[str, nn.Module]:
    """Submodules whose state differs per rank (key stores with ``sharding == "sharded"``)."""
    return {name: module for name, module in method.named_modules() if getattr(module, "sharding", None) == "sharded"}


def _shard_file(directory: Path, rank: int) -> Path:
    return directory / f"sharded_state_rank{rank}.pt"


def _first_found(value: T | None) -> T | None:
    """The first process's ``value`` that is not None, on every process (None if none is); waits for every process."""
    return next((found for found in gather_object([value]) if found is not None), None)


def _finite(method: nn.Module) -> bool:
    """Whether every floating tensor of the method's state (weights, targets, key stores) is finite."""
    tensors = [t for t in method.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()) if tensors else True


def save_checkpoint(accelerator: Accelerator, run_dir: Path, step: int, keep: int, method: nn.Module) -> Path:
    """Save the full training state at ``step``; keep the newest ``keep`` checkpoints.

    Accelerate saves the model from the main process; state that differs per rank (sharded memory banks and
    queues) is saved by every rank into its own file beside it. A state that is not finite is not written.
    """
    flags = accelerator.gather(torch.tensor([float(_finite(method))], device=accelerator.device))
    if not bool(flags.all()):
        raise_once(accelerator, SslcoreError(f"the weights became non-finite by step {step}; training stopped "
                                             "without writing that checkpoint", where=str(run_dir),
                                             hint=restart_hint(run_dir)))
    root = checkpoint_dir(run_dir)
    final = root / f"step_{step:08d}"
    partial = root / f"{PARTIAL_PREFIX}{final.name}"
    failure: OSError | None = None
    if accelerator.is_main_process:
        try:
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)
        except OSError as error:
            failure = error
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(partial), safe_serialization=False)
        shards = sharded_modules(method)
        if shards:
            torch.save({name: module.state_dict() for name, module in shards.items()},
                       _shard_file(partial, accelerator.process_index))
    except OSError as error:
        failure = failure or error
    failure = _first_found(failure)  # every process has written its part
    if failure is None and accelerator.is_main_process:
        try:
            files = {str(p.relative_to(partial)): p.stat().st_size for p in sorted(partial.rglob("*")) if p.is_file()}
            (partial / MANIFEST).write_text(json.dumps({"files": files}))
            if final.exists():
                shutil.rmtree(final)
            partial.rename(final)
            for _, old in list_checkpoints(run_dir)[:-keep]:
                shutil.rmtree(old)
            for stale in root.glob(f"{PARTIAL_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)
        except OSError as error:
            failure = error
    failure = _first_found(failure)
    if failure is not None:
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        latest = latest_checkpoint(run_dir)
        fix = "free space on its disk" if failure.errno in (errno.ENOSPC, errno.EDQUOT) else f"make {root} writable"
        raise_once(accelerator, SslcoreError(
            f"could not write checkpoint {final.name} ({failure.strerror or failure}); removed what was written of it",
            where=str(failure.filename or root),
            hint=f"{fix}, then run the same command again to resume from {latest.name if latest else 'the start'}",
        ))
    return final


def _incomplete(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` is incomplete (an unreadable manifest, a file missing or of another size than the manifest
    records), or None when it is complete. A checkpoint without a manifest was written before sslcore wrote one:
    :func:`_legacy_incomplete` checks it."""
    if not (checkpoint / MANIFEST).exists():
        return _legacy_incomplete(checkpoint)
    try:
        files: dict[str, int] = json.loads((checkpoint / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {MANIFEST} is unreadable"
    for name, size in files.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, not {size}"
    return None


def _legacy_incomplete(checkpoint: Path) -> str | None:
    """Why a checkpoint without a manifest cannot be resumed, or None. Such a checkpoint was renamed into place once
    complete, as now, so only later damage can have hurt it: it must hold the model, and every file torch wrote must
    be a whole archive (a zip file's directory is at its end, so a truncated one has none)."""
    files = sorted(path for path in checkpoint.iterdir() if path.is_file())
    if not any(path.name in _MODEL_FILES for path in files):
        return f"it has neither {MANIFEST} nor a model file ({' or '.join(_MODEL_FILES)})"
    for path in files:
        if path.suffix in _TORCH_SUFFIXES and not zipfile.is_zipfile(path):
            return f"{path.name} is truncated or not a file torch wrote (the checkpoint has no {MANIFEST})"
    return None


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
        state = torch.load(_shard_file(checkpoint, accelerator.process_index), map_location="cpu", weights_only=True)
        for name, part in state.items():
            shards[name].load_state_dict(part)


def _check_world(accelerator: Accelerator, checkpoint: Path, method: nn.Module) -> None:
    """Raise (once) if ``checkpoint`` holds sharded key stores of another number of processes than this run's."""
    saved = len(list(checkpoint.glob(_SHARDS)))
    if sharded_modules(method) and saved != accelerator.num_processes:
        processes = f"{saved} process{'es' if saved > 1 else ''}"
        raise_once(accelerator, SslcoreError(
            f"checkpoint {checkpoint.name} holds the sharded key stores of {processes}, but this run has "
            f"{accelerator.num_processes}",
            where=str(checkpoint.parent),
            hint=f"resume on {processes} (accelerate launch --num_processes {saved}), or start over with "
                 "run.resume=never",
        ))


def resolve_resume(run_dir: Path, resume: str) -> Path | None:
    """The checkpoint ``resume`` names: ``auto`` (latest in the run directory, or none), ``never``, or a path."""
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


def restore(accelerator: Accelerator, run_dir: Path, resume: str, method: nn.Module) -> Path | None:
    """Load the checkpoint ``resume`` names (see :func:`resolve_resume`) and return it, or None to start afresh.

    With ``auto``, an incomplete or unreadable checkpoint is reported and the previous one tried; every process
    loads the same checkpoint.
    """
    chosen = resolve_resume(run_dir, resume)
    if chosen is None:
        return None
    candidates = [chosen] if resume != "auto" else [path for _, path in reversed(list_checkpoints(run_dir))]
    for candidate in candidates:
        problem = _incomplete(candidate)
        if problem is None:
            _check_world(accelerator, candidate, method)
            try:
                load_checkpoint(accelerator, candidate, method)
            except _UNREADABLE as error:
                reason = str(error).strip().partition("\n")[0]
                problem = f"it cannot be read ({type(error).__name__}: {reason})"
            problem = _first_found(problem)
        if problem is None:
            return candidate
        if resume != "auto":
            raise_once(accelerator, SslcoreError(
                f"checkpoint {candidate} is incomplete or damaged: {problem}", where=str(run_dir),
                hint=f"resume from another checkpoint (run.resume=PATH, or run.resume=auto for the newest complete one "
                     f"in {checkpoint_dir(run_dir)}), or start over with run.resume=never",
            ))
        if accelerator.is_main_process:
            out.print(f"skipping checkpoint {candidate}: {problem}; trying the previous one")
    remove = candidates[0] if len(candidates) == 1 else checkpoint_dir(run_dir)
    raise_once(accelerator, SslcoreError(
        f"no usable checkpoint: {', '.join(p.name for p in candidates)} incomplete or unreadable", where=str(run_dir),
        hint=f"remove {remove} to train from the start (or set run.resume=never)",
    ))
