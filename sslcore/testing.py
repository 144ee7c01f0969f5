"""Helpers for tests of distributed behaviour: run a function on N gloo processes on the CPU."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = fn(rank, world, *args)
        torch.save(result, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_distributed(fn: Callable[..., Any], *args: Any, world_size: int = 2) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` gloo processes; return each rank's result.

    ``fn`` must be importable (defined at module level). It runs after ``init_process_group`` and must return
    something ``torch.save`` accepts. Raises if any process fails, or if fewer processes ran than asked.
    """
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(
            _worker, args=(world_size, _free_port(), fn, args, out_dir), nprocs=world_size, start_method="spawn"
        )
        results = [torch.load(os.path.join(out_dir, f"{r}.pt"), weights_only=False) for r in range(world_size)]
    return results


def build_method(
    document: dict[str, Any],
    *,
    host: Any = None,
    num_samples: int = 64,
    total_steps: int = 10,
    steps_per_epoch: int = 5,
) -> Any:
    """Build the method a recipe document names (tables as dicts), for tests of a method's training step.

    ``document`` needs at least ``[method]`` and ``[backbone]`` plus whatever tables the method uses; the engine
    tables ``[run]``, ``[data]``, ``[views]`` and ``[optimizer]`` get harmless defaults when absent.
    """
    from sslcore.method import MethodParts
    from sslcore.plugins import PluginHost
    from sslcore.recipe import resolve_document

    defaults = {
        "run": {"batch_size": 8, "steps": total_steps},
        "data": {"kind": "digits"},
        "views": {"kind": "eval"},
        "optimizer": {"kind": "sgd", "base_lr": 0.1},
    }
    host = host or PluginHost()
    recipe = resolve_document({**defaults, **document}, "<test recipe>", host)
    parts = MethodParts(recipe, num_samples=num_samples, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    method = recipe.components["method"].build(parts=parts)
    parts.check_all_used()
    return method
