"""What every implementation shares: the benchmark settings, the fixed batch, devices, and the timing harness."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class BenchConfig:
    """The size and numerics of one benchmark run, shared by all implementations.

    ``cifar_stem`` gives the ResNet a 3x3 stride-1 first convolution without max-pool (the CIFAR recipes' stem):
    16x the convolution work at 32 px, so the CPU default leaves it off.
    """

    backbone: str = "resnet18"
    image_size: int = 32
    batch_size: int = 64
    device: str = "cpu"
    bf16: bool = False
    channels_last: bool = False
    cifar_stem: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
        if self.batch_size < 2 or self.image_size < 8:
            raise ValueError(f"need batch_size >= 2 and image_size >= 8, got {self.batch_size} and {self.image_size}")

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when asked for, as the engine's ``mixed_precision = "bf16"`` does."""
        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16)

    def prepare(self, module: nn.Module) -> nn.Module:
        """Move a freshly built network to the device and memory format of the run."""
        return module.to(self.torch_device, memory_format=self.memory_format)


@dataclass(frozen=True)
class Timing:
    """Untimed warm-up steps, timed steps per repeat, and interleaved repeats (see :func:`interleaved`)."""

    warmup: int
    steps: int
    repeats: int

    def __post_init__(self) -> None:
        if self.warmup < 1 or self.steps < 1 or self.repeats < 1:
            raise ValueError(f"warmup, steps and repeats must be >= 1, got {self.warmup}, {self.steps}, {self.repeats}")


def fixed_views(config: BenchConfig, batch_size: int | None = None, num_views: int = 2) -> list[torch.Tensor]:
    """The in-memory batch every implementation trains on: ``num_views`` normalised random image tensors."""
    generator = torch.Generator().manual_seed(config.seed)
    size = (batch_size or config.batch_size, 3, config.image_size, config.image_size)
    return [
        torch.randn(size, generator=generator).to(config.torch_device, memory_format=config.memory_format)
        for _ in range(num_views)
    ]


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(
    candidates: dict[str, Callable[[], Any]], timing: Timing, device: str
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Time each candidate's step round-robin: repeat ``r`` runs ``timing.steps`` steps of each one, starting
    the rotation at candidate ``r`` so that slow drift of the machine (heat, other jobs) hits all of them alike.

    Every candidate first runs ``timing.warmup`` (>= 1) untimed steps; the first one's return value (the loss of the
    first step) is returned as well. The garbage collector is paused while timing, as ``timeit`` does.
    Returns ``(seconds per step of each repeat, first loss)`` per candidate.
    """
    first: dict[str, float] = {}
    for name, step in candidates.items():
        first[name] = float(step())
        for _ in range(timing.warmup - 1):
            step()
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    gc.disable()  # as timeit does: no collection pauses inside a timed block
    try:
        for repeat in range(timing.repeats):
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                step = candidates[name]
                synchronize(device)
                start = time.perf_counter()
                for _ in range(timing.steps):
                    step()
                synchronize(device)
                times[name].append((time.perf_counter() - start) / timing.steps)
    finally:
        gc.enable()
    return times, first


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over repeats of the per-repeat ratio: the two were timed back to back, so drift cancels."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def spread(values: list[float]) -> float | None:
    """Relative spread of repeated timings, (max - min) / median; ``None`` for a single timing."""
    if len(values) < 2:
        return None
    return (max(values) - min(values)) / statistics.median(values)


def worst_spread(*series: list[float]) -> float | None:
    """The largest :func:`spread` of several timing series (``None`` for single timings)."""
    spreads = [spread(values) for values in series]
    return None if None in spreads else max(spreads)


def version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info(config: BenchConfig) -> dict[str, Any]:
    """Facts needed to compare two result files: hardware, library versions, load at the start."""
    return {
        "device": config.device,
        "device_name": torch.cuda.get_device_name() if config.device == "cuda" else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": version("timm"),
        "accelerate": version("accelerate"),
        "sslcore": version("sslcore"),
        "lightly": version("lightly"),
        "load_average_start": load_average(),
    }
