"""How step time grows: with MoCo v2's queue size K, with the batch size, and with a memory bank's size."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks import handwritten
from benchmarks.common import BenchConfig, Timing, fixed_views, interleaved, median, worst_spread
from benchmarks.methods import METHODS, benchmark_recipe
from benchmarks.sslcore_step import SslcoreStep
from sslcore.plugins import PluginHost


def _moco_pair(config: BenchConfig, host: PluginHost, output_dir: str, *, batch_size: int | None = None,
               queue_size: int | None = None) -> tuple[SslcoreStep, handwritten.HandWritten]:
    """sslcore's MoCo v2 step and the hand-written one, from the same weights."""
    sized = replace(config, batch_size=batch_size or config.batch_size)
    recipe = benchmark_recipe(METHODS["mocov2"], sized, host, output_dir=output_dir, queue_size=queue_size)
    views = fixed_views(sized)
    torch.manual_seed(config.seed)
    sslcore = SslcoreStep(recipe, host, sized, views)
    plain = handwritten.MoCoV2(recipe, sized, views, sslcore.trainer.total_steps, sslcore.trainer.steps_per_epoch)
    plain.load_from(sslcore.method)
    return sslcore, plain


def _rows(times: dict[str, list[float]], keys: list[Any], label: str,
          extra: Callable[[Any], dict] | None = None) -> list:
    """One row per scaled value: both implementations' median seconds, their ratio and the worst spread."""
    rows = []
    for key in keys:
        sslcore, plain = times[f"sslcore@{key}"], times[f"handwritten@{key}"]
        rows.append({
            label: key,
            "sslcore_s": median(sslcore),
            "handwritten_s": median(plain),
            "ratio_handwritten": median(sslcore) / median(plain),
            "spread": worst_spread(sslcore, plain),
            **(extra(key) if extra else {}),
        })
    return rows


def queue_steps(config: BenchConfig, host: PluginHost, sizes: list[int], timing: Timing, output_dir: str) -> list:
    """MoCo v2 training-step time (sslcore and hand-written) for each queue size K, all interleaved."""
    candidates: dict[str, Callable[[], Any]] = {}
    for size in sizes:
        sslcore, plain = _moco_pair(config, host, output_dir, queue_size=size)
        candidates[f"sslcore@{size}"], candidates[f"handwritten@{size}"] = sslcore, plain.step
    times, _ = interleaved(candidates, timing, config.device)
    return _rows(times, sizes, "queue_size")


def batch_steps(config: BenchConfig, host: PluginHost, batches: list[int], timing: Timing, output_dir: str) -> list:
    """MoCo v2 training-step time (sslcore and hand-written) for each batch size, all interleaved."""
    candidates: dict[str, Callable[[], Any]] = {}
    for batch in batches:
        sslcore, plain = _moco_pair(config, host, output_dir, batch_size=batch)
        candidates[f"sslcore@{batch}"], candidates[f"handwritten@{batch}"] = sslcore, plain.step
    times, _ = interleaved(candidates, timing, config.device)
    return _rows(times, batches, "batch_size",
                 lambda b: {"sslcore_images_per_s": b / median(times[f"sslcore@{b}"])})


class _QueueWork:
    """The queue's share of a MoCo step with sslcore's registered ``queue`` and ``infonce``: read the keys,
    InfoNCE forward and backward, write (enqueue)."""

    def __init__(self, store: Any, loss_fn: Any, q: torch.Tensor, k: torch.Tensor) -> None:
        self.store, self.loss_fn, self.q, self.k = store, loss_fn, q, k

    def __call__(self) -> torch.Tensor:
        loss = self.loss_fn(self.q, self.store.read(self.k))
        loss.backward()
        self.store.write(self.k)
        self.q.grad = None
        return loss.detach()


class _PlainQueueWork:
    """The same written plainly: logits against the queue tensor, cross-entropy, a slice assignment."""

    def __init__(self, queue: torch.Tensor, q: torch.Tensor, k: torch.Tensor, temperature: float) -> None:
        self.queue, self.q, self.k, self.temperature, self.ptr = queue, q, k, temperature, 0
        self.labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)

    def __call__(self) -> torch.Tensor:
        q, k = self.q, self.k
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.t()], dim=1) / self.temperature
        loss = F.cross_entropy(logits, self.labels)
        loss.backward()
        self.queue[self.ptr : self.ptr + k.shape[0]] = k
        self.ptr = (self.ptr + k.shape[0]) % self.queue.shape[0]
        q.grad = None
        return loss.detach()


def queue_component(config: BenchConfig, host: PluginHost, sizes: list[int], timing: Timing, dim: int = 128,
                    temperature: float = 0.2) -> list:
    """The queue's share of a MoCo step alone (no backbone), so the cost that grows with K is visible.

    Also timed: sslcore with the loss's ``normalize = false``, which skips re-normalising the (already unit)
    queue at every step; the rest of the gap to the hand-written version is the clone of the queue in ``Queue.read``.
    """
    device = config.torch_device
    generator = torch.Generator().manual_seed(config.seed)
    q = F.normalize(torch.randn(config.batch_size, dim, generator=generator), dim=1).to(device).requires_grad_()
    k = F.normalize(torch.randn(config.batch_size, dim, generator=generator), dim=1).to(device)
    queue_entry, loss_entry = host.registries["key_store"].get("queue"), host.registries["loss"].get("infonce")
    loss_fn = loss_entry.build(loss_entry.config(temperature=temperature))
    unnormalized_loss = loss_entry.build(loss_entry.config(temperature=temperature, normalize=False))
    candidates: dict[str, Callable[[], Any]] = {}
    for size in sizes:
        def store() -> Any:
            return queue_entry.build(queue_entry.config(size=size), dim=dim, num_samples=size).to(device)

        plain = F.normalize(torch.randn(size, dim, generator=generator), dim=1).to(device)
        candidates[f"sslcore@{size}"] = _QueueWork(store(), loss_fn, q, k)
        candidates[f"no-renormalize@{size}"] = _QueueWork(store(), unnormalized_loss, q, k)
        candidates[f"handwritten@{size}"] = _PlainQueueWork(plain, q, k, temperature)
    times, _ = interleaved(candidates, timing, config.device)
    return _rows(times, sizes, "queue_size",
                 lambda size: {"sslcore_loss_normalize_false_s": median(times[f"no-renormalize@{size}"])})


class _BankUpdate:
    def __init__(self, bank: Any, features: torch.Tensor) -> None:
        self.bank, self.features = bank, features

    def __call__(self) -> float:
        batch = self.features.shape[0]
        self.bank.update(torch.randint(self.bank.num_samples, (batch,), device=self.features.device), self.features)
        return 0.0


class _BankSample:
    def __init__(self, bank: Any, batch: int, negatives: int) -> None:
        self.bank, self.batch, self.negatives = bank, batch, negatives

    def __call__(self) -> float:
        vectors, _ = self.bank.sample(self.batch, self.negatives)
        return float(vectors.shape[1])


def memory_bank(config: BenchConfig, host: PluginHost, sizes: list[int], timing: Timing, *, dim: int = 128,
                negatives: int = 4096, dtype: str = "float16") -> list:
    """sslcore's ``memory_bank`` (InstDisc): build, update of a batch's rows, and drawing ``negatives`` per query,
    against the number of stored entries. Indices are fresh random ones at every call."""
    device = config.torch_device
    entry = host.registries["key_store"].get("memory_bank")
    batch = config.batch_size
    features = F.normalize(torch.randn(batch, dim), dim=1).to(device)
    candidates: dict[str, Callable[[], Any]] = {}
    built: dict[int, float] = {}
    for size in sizes:
        start = time.perf_counter()
        bank = entry.build(entry.config(dtype=dtype), dim=dim, num_samples=size).to(device)
        built[size] = time.perf_counter() - start
        candidates[f"update@{size}"] = _BankUpdate(bank, features)
        candidates[f"sample@{size}"] = _BankSample(bank, batch, negatives)
    times, _ = interleaved(candidates, timing, config.device)
    return [
        {
            "bank_size": size,
            "build_s": built[size],
            "update_s": median(times[f"update@{size}"]),
            "sample_s": median(times[f"sample@{size}"]),
            "update_and_sample_s": median(times[f"update@{size}"]) + median(times[f"sample@{size}"]),
            "bank_megabytes": size * dim * (2 if dtype == "float16" else 4) / 2**20,
        }
        for size in sizes
    ]


def growth(rows: list[dict], x: str, y: str) -> dict[str, float]:
    """How ``y`` grows between the smallest and largest ``x``: both ratios and the exponent p of y ~ x^p."""
    first, last = rows[0], rows[-1]
    x_ratio, y_ratio = last[x] / first[x], last[y] / first[y]
    return {"x_ratio": x_ratio, "y_ratio": y_ratio, "exponent": math.log(y_ratio) / math.log(x_ratio)}
