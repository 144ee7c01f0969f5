"""Helpers for tests of sslcore and its method plugins: a function run on N gloo processes on the CPU, methods built
from recipes, a tiny test backbone with a plugin host that offers it, and the engine's training step
(:func:`training_step`, which is :func:`sslcore.engine.step.train_step`)."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import pkgutil
import socket
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import attrs
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sslcore import hookimpl
from sslcore.engine.step import train_step
from sslcore.method import Batch, MethodParts
from sslcore.plugins import PluginHost
from sslcore.recipe import Recipe, resolve, resolve_document
from sslcore.registry import Registry

# --- processes and threads --------------------------------------------------------------------------------------------


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
        dist.barrier()  # no rank tears gloo down while another still talks to it (a std::terminate otherwise)
    finally:
        dist.destroy_process_group()
    # Its result is saved: leave without the interpreter's teardown, where torch's gloo / DDP threads being
    # destroyed now and then abort a finished process ("terminate called without an active exception").
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


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


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the body on one intra-op thread (tiny tensors gain nothing from more), then restore the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --- building methods -------------------------------------------------------------------------------------------------


def build_method(
    document: dict[str, Any],
    *,
    host: PluginHost | None = None,
    num_samples: int = 64,
    total_steps: int = 10,
    steps_per_epoch: int = 5,
) -> Any:
    """Build the method a recipe document names (tables as dicts), for tests of a method's training step.

    ``document`` needs at least ``[method]`` and ``[backbone]`` plus whatever tables the method uses; the engine
    tables ``[run]``, ``[data]``, ``[views]`` and ``[optimizer]`` get harmless defaults when absent.
    """
    defaults = {
        "run": {"batch_size": 8, "steps": total_steps},
        "data": {"kind": "digits"},
        "views": {"kind": "eval"},
        "optimizer": {"kind": "sgd", "base_lr": 0.1},
    }
    recipe = resolve_document({**defaults, **document}, "<test recipe>", host or PluginHost())
    return _build(recipe, num_samples=num_samples, total_steps=total_steps, steps_per_epoch=steps_per_epoch)


def build_recipe(
    name: str,
    host: PluginHost,
    *overrides: str,
    num_samples: int = 1000,
    total_steps: int = 100,
    steps_per_epoch: int = 10,
) -> tuple[Recipe, Any]:
    """Resolve the recipe ``name`` with ``overrides`` and build its method as a run of ``total_steps`` would."""
    recipe = resolve(name, host, overrides)
    return recipe, _build(recipe, num_samples=num_samples, total_steps=total_steps, steps_per_epoch=steps_per_epoch)


def _build(recipe: Recipe, *, num_samples: int, total_steps: int, steps_per_epoch: int) -> Any:
    parts = MethodParts(recipe, num_samples=num_samples, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    method = recipe.components["method"].build(parts=parts)
    parts.check_all_used()
    return method


# --- a tiny backbone, registered as ``tiny`` through a test plugin ----------------------------------------------------


@attrs.frozen(kw_only=True)
class TinyConfig:
    """Options of the ``tiny`` test backbone."""

    width: int = 8
    in_chans: int = 3
    batch_norm: bool = True
    stride: int = 2
    drop_path: float = 0.0


class TinyNet(nn.Module):
    """A tiny conv net for tests: conv 3x3 [-> BN] -> ReLU [-> DropPath] -> global average pool.

    Maps (B, in_chans, H, W) to (B, width). The convolution has a bias only without BatchNorm, which would cancel it.
    """

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(config.in_chans, config.width, 3, stride=config.stride, padding=1, bias=not config.batch_norm)
        ]
        if config.batch_norm:
            layers.append(nn.BatchNorm2d(config.width))
        layers.append(nn.ReLU())
        if config.drop_path > 0:
            from timm.layers import DropPath  # imported only here: timm is slow to import

            layers.append(DropPath(config.drop_path))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.num_features = config.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@hookimpl
def _register_tiny(registry: Registry) -> None:
    registry.add("tiny", TinyNet, TinyConfig)


_TINY_PLUGIN = types.SimpleNamespace(sslcore_register_backbones=_register_tiny)


def tiny_host(name: str, plugin: object) -> PluginHost:
    """A plugin host with the built-in plugins, the ``tiny`` backbone and ``plugin`` (named ``name``) only."""
    return PluginHost(autoload=False, extra_plugins=[("tiny", _TINY_PLUGIN), (name, plugin)])


# --- the engine's training step ---------------------------------------------------------------------------------------

#: The engine's step, :func:`sslcore.engine.step.train_step`: ``training_step(method, optimizer, batch, info,
#: model=ddp_model)``.
training_step = train_step


def batch_of(*views: torch.Tensor) -> Batch:
    """A batch of ``views`` (each (B, C, H, W)) whose samples are dataset positions 0 to B - 1."""
    return Batch(views=list(views), index=torch.arange(views[0].shape[0]))


def copy_state(target: nn.Module, source: nn.Module) -> None:
    """Copy ``source``'s state dict into ``target``'s entry by entry, in order: the names may differ, not the shapes."""
    target_state, source_state = target.state_dict(), source.state_dict()
    target_shapes = [tensor.shape for tensor in target_state.values()]
    source_shapes = [tensor.shape for tensor in source_state.values()]
    if target_shapes != source_shapes:
        raise ValueError(f"the states differ in shape: {target_shapes} and {source_shapes}")
    with torch.no_grad():
        for mine, theirs in zip(target_state.values(), source_state.values()):
            mine.copy_(theirs)


def modules_defined_by(package: ModuleType) -> list[str]:
    """The ``nn.Module`` subclasses defined anywhere in ``package`` (every submodule imported), as dotted names.

    Empty for a method plugin that is a design of the core's look-up method: it holds no forward of its own.
    """
    modules = [package] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
    ]
    return sorted(
        f"{module.__name__}.{name}"
        for module in modules
        for name, value in inspect.getmembers(module, inspect.isclass)
        if issubclass(value, nn.Module) and value.__module__.startswith(package.__name__)
    )


# --- views --------------------------------------------------------------------------------------------------------------


def pil_and_batched_views(
    pil: Callable[[Any], list[torch.Tensor]], batched: Any, images: list[Any]
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """A view transform's ``pil`` and ``batched`` pipelines on ``images``, sample i seeded with i as the engine seeds
    it: the PIL views and the batched views (each stacked per view position) and the batched parameters."""
    from sslcore.data.batched import batch_draws
    from sslcore.engine.data import seeded_rng

    reference, draws = [], []
    for index, image in enumerate(images):
        with seeded_rng(index):
            reference.append(pil(image))
        with seeded_rng(index):
            draws.append(batched(image))
    pending = batch_draws(draws, batched)
    return [torch.stack(group) for group in zip(*reference)], pending.finish(), pending.params
