"""End-to-end input throughput: CIFAR-10 Parquet images -> two SimCLR views per image -> batches, in workers.

sslcore: the engine's own loader (``Trainer.loader``: the ``parquet`` source, the ``simclr`` views of the
``simclr_cifar10`` recipe, per-sample seeded augmentation, the engine's sampler and collate, prepared by
Accelerate). lightly: ``lightly.transforms.SimCLRTransform`` with the same settings (crop scale 0.08-1, colour
strength 0.5, no blur) in a plain ``torch.utils.data.DataLoader`` over the same Parquet file read with
HuggingFace ``datasets``. Same batch size and worker count; images per second of source images (two views each).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import BenchConfig, median, spread
from benchmarks.methods import METHODS, benchmark_recipe
from benchmarks.sslcore_step import make_accelerator
from sslcore.engine.trainer import Trainer
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve_document


class ParquetImages(Dataset):
    """Rows of a HuggingFace dataset as ``(transform(image), label)``, the shape lightly's transforms expect."""

    def __init__(self, rows: datasets.Dataset, transform: Any) -> None:
        self.rows = rows
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        row = self.rows[index]
        return self.transform(row["image"]), row["label"]


def sslcore_loader(config: BenchConfig, host: PluginHost, train: Path, test: Path, workers: int,
                   output_dir: str) -> Iterable:
    """The loader a ``simclr_cifar10`` training run iterates."""
    recipe = benchmark_recipe(METHODS["simclr"], config, host, output_dir=output_dir)
    document = recipe.to_dict()
    document["data"] = {"kind": "parquet", "train": str(train), "test": str(test)}
    document["run"]["num_workers"] = workers
    resolved = resolve_document(document, f"{recipe.source} (pipeline)", host)
    return Trainer(resolved, host, make_accelerator(config)).loader


def lightly_loader(config: BenchConfig, train: Path, batch_size: int, workers: int) -> Iterable:
    from lightly.transforms import SimCLRTransform

    transform = SimCLRTransform(input_size=config.image_size, cj_strength=0.5, gaussian_blur=0.0, min_scale=0.08)
    rows = datasets.load_dataset("parquet", data_files=str(train), split="train")
    return DataLoader(ParquetImages(rows, transform), batch_size=batch_size, shuffle=True, drop_last=True,
                      num_workers=workers, persistent_workers=workers > 0)


def _rate(loader: Iterable, batches: int, batch_size: int) -> float:
    """Images per second over ``batches`` batches, after the first one (worker start-up) has arrived."""
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def data_pipeline(config: BenchConfig, host: PluginHost, *, data_dir: Path, workers: int, batches: int,
                  repeats: int, output_dir: str, with_lightly: bool) -> dict[str, Any]:
    """images/s of each loader, measured in turns (the order rotates each repeat); skipped without the data."""
    train, test = data_dir / "train.parquet", data_dir / "test.parquet"
    if not train.is_file() or not test.is_file():
        return {"skipped": f"no CIFAR-10 Parquet files in {data_dir} (see ../shared/data/README.md)"}
    loaders = {"sslcore": sslcore_loader(config, host, train, test, workers, output_dir)}
    if with_lightly:
        loaders["lightly"] = lightly_loader(config, train, config.batch_size, workers)
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    names = list(loaders)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(_rate(loaders[name], batches, config.batch_size))
    result: dict[str, Any] = {
        "workers": workers,
        "batch_size": config.batch_size,
        "batches_per_repeat": batches,
        "torch_threads": torch.get_num_threads(),
        "sslcore_images_per_s": median(rates["sslcore"]),
        "sslcore_spread": spread(rates["sslcore"]),
        "repeats": rates,
    }
    if with_lightly:
        result["lightly_images_per_s"] = median(rates["lightly"])
        result["lightly_spread"] = spread(rates["lightly"])
        result["ratio_lightly"] = result["sslcore_images_per_s"] / result["lightly_images_per_s"]
    else:
        result["lightly_images_per_s"] = None
        result["ratio_lightly"] = None
    return result
