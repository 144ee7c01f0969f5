"""sslcore's training step: the engine's own ``Trainer`` built from a recipe, fed a fixed in-memory batch."""

from __future__ import annotations

import math

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs

from benchmarks.common import BenchConfig
from sslcore.engine.trainer import Trainer
from sslcore.errors import SslcoreError
from sslcore.method import Method, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import Recipe


def make_accelerator(config: BenchConfig) -> Accelerator:
    """The accelerator the engine would make for this device and precision (one process)."""
    return Accelerator(
        cpu=config.device == "cpu",
        mixed_precision="bf16" if config.bf16 else "no",
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )


class SslcoreStep:
    """One optimizer step exactly as ``Trainer.fit`` takes it, minus the data loader.

    The body of ``fit``'s loop: ``_step`` (seeds, schedule, then ``train_step``: targets, autocast forward, backward,
    optimizer step, key-store writes, ``after_optimizer_step``), the step counter, and the work of a logging step:
    the loss reduced over processes and read on the host, checked finite, the logs turned into floats. ``fit`` waits
    on the device at logging steps only; the benchmark reads every step's loss, so every step is one.
    """

    def __init__(self, recipe: Recipe, host: PluginHost, config: BenchConfig, views: list[torch.Tensor]) -> None:
        accelerator = make_accelerator(config)
        self.trainer = Trainer(recipe, host, accelerator)
        config.prepare(self.trainer.model)
        batch = views[0].shape[0]
        device = accelerator.device
        self.raw = {
            "views": views,
            "index": torch.arange(batch, device=device),
            "label": torch.zeros(batch, dtype=torch.long, device=device),
        }
        self.last_logs: dict[str, float] = {}

    @property
    def method(self) -> Method:
        return self.trainer.method

    def __call__(self) -> float:
        return self.step(self.raw)

    def step(self, raw: dict[str, torch.Tensor]) -> float:
        """One step on the batch ``raw`` (the engine loader's ``views`` / ``index`` / ``label``); its mean loss."""
        trainer = self.trainer
        acc = trainer.accelerator
        info = StepInfo(trainer.state.step, trainer.total_steps, trainer.steps_per_epoch)
        output = trainer._step(raw, info)
        total = acc.reduce(output.loss.detach().float().reshape(1), reduction="sum")
        mean_loss = total.item() / acc.num_processes
        if not math.isfinite(mean_loss):
            raise SslcoreError(f"the benchmarked loss became non-finite ({mean_loss}) at step {trainer.state.step}")
        self.last_logs = {k: float(v) for k, v in output.logs.items()}
        trainer.state.step += 1
        return mean_loss
