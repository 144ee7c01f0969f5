"""View generation alone: CIFAR-10 Parquet rows -> two SimCLR views per image (32 px) -> batches, no model.

    nice -n 10 python -m benchmarks.views [--workers 2] [--batch-size 256] [--batches 20] [--repeats 3] [--json F]

Loaders, all with the same workers and batch size, timed in turns (the order rotates each repeat; medians):

- ``pil``: the engine's loader pieces (``parquet`` source, per-sample seeded ``TrainingViews``, ``EpochSampler``) with
  the ``simclr`` views of ``simclr_cifar10`` (colour strength 0.5, no blur), ``[views] pipeline = "pil"``;
- ``batched``: the same with ``pipeline = "batched"``, views made per batch in the workers (what the engine does on
  the CPU);
- ``batched-main``: the same, views made per batch in this process after the loader (what the engine does on an
  accelerator, here on the CPU), to show why the CPU path makes them in the workers;
- ``pil-cache`` and ``batched-cache``: ``pil`` and ``batched`` reading the rows from the decoded-image cache
  (``[data] cache = "decoded"``, built before timing), so no image is decoded per read;
- ``lightly``: lightly's ``SimCLRTransform`` with the same settings in a plain ``DataLoader`` (as in
  :mod:`benchmarks.pipeline`), when lightly is installed.

Images per second count source images (two views each).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from benchmarks.common import BenchConfig, load_average, median, spread
from benchmarks.pipeline import _rate, lightly_loader
from sslcore.data.decoded_cache import DecodedRows, build, entry_path, fingerprint, stale_reason
from sslcore.data.source_configs import CacheOptions
from sslcore.data.sources import ParquetSourceConfig, build_parquet
from sslcore.data.views import SimCLRViewsConfig, build_simclr
from sslcore.engine.data import EpochSampler, TrainingViews
from sslcore.engine.views import ready_views, training_collate

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"


class MadeHere:
    """A loader whose batches' views are made in this process (:func:`ready_views`)."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            yield {**batch, "views": ready_views(batch["views"])}


def sslcore_loader(rows: Any, pipeline: str, batch_size: int, workers: int, here: bool = False) -> Iterable:
    transform = build_simclr(SimCLRViewsConfig(size=32, strength=0.5, blur_prob=0.0, pipeline=pipeline))
    device = torch.device("meta" if here else "cpu")  # any non-CPU device leaves the views to this process
    loader = DataLoader(
        TrainingViews(rows, transform, seed=0),
        batch_size=batch_size,
        sampler=EpochSampler(len(rows), len(rows), seed=0),
        num_workers=workers,
        collate_fn=training_collate(transform, device),
        drop_last=True,
        persistent_workers=workers > 0,
    )
    return MadeHere(loader) if here else loader


def decoded_rows(rows: Any, folder: Path, workers: int) -> DecodedRows:
    """``rows`` read from a decoded-image cache entry under ``folder``, built first as the engine builds it."""
    options = CacheOptions(cache="decoded", cache_dir=str(folder))
    entry, expected = entry_path(rows, options), fingerprint(rows, options.cache_max_side)
    if stale_reason(entry, expected) is not None:
        build(rows, entry, expected, options.cache_max_side, workers)
    return DecodedRows(entry, rows)


def measure(data: Path, *, workers: int, batch_size: int, batches: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sslcore-views-") as folder:
        return _measure(data, Path(folder), workers=workers, batch_size=batch_size, batches=batches, repeats=repeats)


def _measure(data: Path, folder: Path, *, workers: int, batch_size: int, batches: int, repeats: int) -> dict[str, Any]:
    rows = build_parquet(ParquetSourceConfig(train=str(data / "train.parquet")), "train")
    cached = decoded_rows(rows, folder, workers)
    loaders: dict[str, Iterable] = {
        "pil": sslcore_loader(rows, "pil", batch_size, workers),
        "batched": sslcore_loader(rows, "batched", batch_size, workers),
        "batched-main": sslcore_loader(rows, "batched", batch_size, workers, here=True),
        "pil-cache": sslcore_loader(cached, "pil", batch_size, workers),
        "batched-cache": sslcore_loader(cached, "batched", batch_size, workers),
    }
    try:
        import lightly  # noqa: F401

        config = BenchConfig(image_size=32, batch_size=batch_size)
        loaders["lightly"] = lightly_loader(config, data / "train.parquet", batch_size, workers)
    except ImportError:
        pass
    load = load_average()
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    names = list(loaders)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(_rate(loaders[name], batches, batch_size))
    return {
        "workers": workers,
        "batch_size": batch_size,
        "batches_per_repeat": batches,
        "torch_threads": torch.get_num_threads(),
        "load_average_before": load,
        "load_average_after": load_average(),
        "lightly": "lightly" in loaders or "not installed",
        "images_per_s": {name: median(values) for name, values in rates.items()},
        "spread": {name: spread(values) for name, values in rates.items()},
        "ratio_to_pil": {name: median(values) / median(rates["pil"]) for name, values in rates.items()},
        "repeats": rates,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with CIFAR-10's train.parquet")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per loader and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    result = measure(
        args.data, workers=args.workers, batch_size=args.batch_size, batches=args.batches, repeats=args.repeats
    )
    print(
        f"view generation, CIFAR-10 32 px, SimCLR views, batch {args.batch_size}, {args.workers} workers "
        f"(lightly: {result['lightly']}; load average {result['load_average_before']})"
    )
    for name, rate in result["images_per_s"].items():
        print(
            f"  {name:14s} {rate:8.0f} images/s  x{result['ratio_to_pil'][name]:.2f} of pil  "
            f"(spread {result['spread'][name] or 0:.0%})"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
