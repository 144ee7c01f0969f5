"""A step that never waits: between log steps nothing reads a tensor back to the host (``.item()``, ``float()``,
``int()``, ``bool()``, ``.tolist()``, ``.cpu()``, ``.numpy()``), which on an accelerator would wait for the device.

Counted on short CPU runs of shipped recipes, from the start of each step that is not a log step to the start of the
next step: the step, the loss window, the loop's bookkeeping. Not counted: the data loader (on a real run its
workers, on the host), and reads inside ``torch.optim`` (Adam keeps its step counters on the host, where ``.item()``
waits for nothing). A boolean-mask index or ``torch.unique`` would also wait on an accelerator without a Python
read: the memory bank avoids both (fixed-size gathers and writes) and checks its indices with a device assertion.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import dataloader

from sslcore.engine import trainer as trainer_module
from sslcore.engine.trainer import Trainer
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve

READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
LOG_EVERY = 3
SHORT = [
    "run.steps=6",
    f"run.log_every={LOG_EVERY}",
    "run.checkpoint_every=0",
    "run.eval_every=0",
    "run.progress=false",
    "data.train_limit=64",
    "eval.limit_train=32",
    "eval.limit_eval=16",
]


class HostReads:
    """Counts tensor reads while :attr:`armed`, by read and calling line."""

    def __init__(self) -> None:
        self.armed = False
        self.between_logs: Counter[str] = Counter()
        self.elsewhere: Counter[str] = Counter()  # log steps, evaluation

    def counting(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def read(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            caller = traceback.extract_stack(limit=2)[0]
            if "torch/optim/" not in caller.filename:
                (self.between_logs if self.armed else self.elsewhere)[f"{name} at {caller.filename}"] += 1
            return original(tensor, *args, **kwargs)

        return read

    def paused(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            armed, self.armed = self.armed, False
            try:
                return original(*args, **kwargs)
            finally:
                self.armed = armed

        return call


@pytest.fixture
def reads(monkeypatch) -> HostReads:
    counter = HostReads()
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counter.counting(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(
        dataloader._BaseDataLoaderIter, "__next__", counter.paused(dataloader._BaseDataLoaderIter.__next__)
    )
    monkeypatch.setattr(dataloader.DataLoader, "__iter__", counter.paused(dataloader.DataLoader.__iter__))
    step = Trainer._step

    def armed_step(trainer: Trainer, raw: dict[str, Any], info: Any) -> Any:
        counter.armed = (info.step + 1) % LOG_EVERY != 0  # until the next step starts
        return step(trainer, raw, info)

    monkeypatch.setattr(Trainer, "_step", armed_step)
    return counter


# SimCLR (in-batch keys, LARS), MoCo v2 (queue, EMA target, shuffled BN), BYOL (predictor, EMA), SwAV (queues it
# waits to fill, Sinkhorn), DINO (multi-crop, centering, per-parameter clipping, AdamW), InstDisc (memory bank,
# NCE's Z fixed on the first step), CMC (two memory banks).
@pytest.mark.parametrize(
    "name", ["simclr_smoke", "moco_smoke", "byol_smoke", "swav_smoke", "dino_smoke", "instdisc_smoke", "cmc_smoke"]
)
def test_no_step_reads_the_device_between_log_steps(tmp_path: Path, reads: HostReads, name: str):
    host = PluginHost()
    Trainer(resolve(name, host, [*SHORT, f"run.output_dir={tmp_path}"]), host).fit()
    assert reads.between_logs == {}
    assert any(where.endswith("sslcore/engine/trainer.py") for where in reads.elsewhere)  # the loss window, logged


def test_a_read_inside_a_step_is_counted(tmp_path: Path, reads: HostReads, monkeypatch):
    """The check can fail: a step that logs its loss with ``float()`` is caught."""
    step = trainer_module.train_step

    def reading_step(*args: Any, **kwargs: Any) -> Any:
        output = step(*args, **kwargs)
        float(output.loss.detach())
        return output

    monkeypatch.setattr(trainer_module, "train_step", reading_step)
    host = PluginHost()
    small = ["data.size=16", "views.size=16", "eval.transform.size=16"]
    Trainer(resolve("simclr_smoke", host, [*SHORT, *small, f"run.output_dir={tmp_path}"]), host).fit()
    assert list(reads.between_logs.values()) == [4]  # steps 1, 2, 4, 5
    assert next(iter(reads.between_logs)).startswith("__float__ at ")
