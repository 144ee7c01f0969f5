"""End to end: images per second from the Parquet file to the optimizer step.

Each candidate is a whole training pipeline on the same Parquet file, the same cores and the same worker count:
DataLoader workers read and decode the rows and make the views, the main process moves the batch to the device
and takes the step (forward, backward, optimizer step, the loss read on the host).

- ``sslcore``: the engine's own ``Trainer`` built from the method's recipe (:func:`benchmarks.methods.
  benchmark_recipe`) with ``[data]`` the Parquet file and ``run.num_workers`` workers, stepped as ``fit`` does
  (:class:`benchmarks.sslcore_step.SslcoreStep` on the loader's batches); ``sslcore_copy`` is an identical second
  one, the A/A control; ``sslcore_cache`` adds ``data.cache = "decoded"`` (built before timing; its build time is
  reported); ``sslcore_batched`` sets ``views.pipeline = "batched"``, ``sslcore_batched_cache`` both.
- ``lightly``: lightly's example pipeline: its ``SimCLRTransform`` / ``DINOTransform`` in a plain ``DataLoader``
  over the rows read with HuggingFace ``datasets`` (:class:`benchmarks.pipeline.ParquetImages`), the model and step
  of :mod:`benchmarks.with_lightly`, with the same transform settings as the recipe's views.

Timing: each repeat runs every candidate in turn (the order rotates each repeat); a candidate's turn starts a fresh
pass over its loader (batches made ahead during its previous turn are dropped), takes one untimed step (worker
start-up, the first batch), then times ``steps`` steps. The previous turn's workers may still finish the batches
they had begun (at most two per worker, torch's prefetch) early in a turn: every candidate meets that alike in the
rotation, and long turns (``--e2e-steps``) make it small. Ratios are medians of per-repeat ratios to ``sslcore``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader

from benchmarks.common import BenchConfig, fixed_views, median, paired_ratio, spread, synchronize
from benchmarks.methods import METHODS, MethodSpec, benchmark_recipe
from benchmarks.pipeline import ParquetImages
from benchmarks.sslcore_step import SslcoreStep
from sslcore.errors import SslcoreError
from sslcore.plugins import PluginHost
from sslcore.recipe import Recipe, resolve_document

DINO = MethodSpec(
    "dino",
    "dino_resnet50",
    "sslcore-plugin-dino",
    "DINO multi-crop: 2 global crops + 8 local crops of 96 px, ResNet-50 student and EMA teacher",
)
#: The methods of the section per device: SimCLR on the CPU; SimCLR and DINO's multi-crop on a GPU.
E2E_METHODS = {"cpu": ("simclr",), "cuda": ("simclr", "dino")}
#: On a GPU the section runs at ImageNet scale: ResNet-50 (ImageNet stem) at 224 px (the crops resize the images).
CUDA_SCALE = {"backbone": "resnet50", "image_size": 224, "cifar_stem": False}
#: sslcore variants beyond the PIL pipeline, as recipe overrides (a new view pipeline: one more line here).
VARIANTS = {
    "sslcore_cache": {"data": {"cache": "decoded"}},
    "sslcore_batched": {"views": {"pipeline": "batched"}},
    "sslcore_batched_cache": {"data": {"cache": "decoded"}, "views": {"pipeline": "batched"}},
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every table of the section shares: the data, the scratch folder, workers, timing, the row limit, and
    why lightly is left out (None: it is measured)."""

    data_dir: Path
    output_dir: str
    workers: int
    steps: int
    repeats: int
    limit: int | None
    lightly_note: str | None

    @property
    def train(self) -> Path:
        return self.data_dir / "train.parquet"


def e2e_config(config: BenchConfig) -> BenchConfig:
    return dataclasses.replace(config, **CUDA_SCALE) if config.device == "cuda" else config


def sslcore_recipe(
    spec: MethodSpec, config: BenchConfig, host: PluginHost, settings: Settings, changes: dict[str, dict[str, Any]]
) -> Recipe:
    """The method's benchmark recipe reading the Parquet file with the settings' workers, plus ``changes`` per table.

    On 224 px images SimCLR's views are the ImageNet ones (colour strength 1, blur p 0.5), as lightly's defaults."""
    recipe = benchmark_recipe(spec, config, host, output_dir=settings.output_dir)
    document = recipe.to_dict()
    cache_dir = str(Path(settings.output_dir) / "decoded")
    document["data"] = {"kind": "parquet", "train": str(settings.train), "cache_dir": cache_dir}
    if settings.limit is not None:
        document["data"]["train_limit"] = settings.limit
    document["run"]["num_workers"] = settings.workers
    if spec.name == "simclr" and config.image_size > 64:
        document["views"].update(strength=1.0, blur_prob=0.5)
    for table, values in changes.items():
        document[table].update(values)
    return resolve_document(document, f"{recipe.source} (end to end)", host)


class SslcoreFlow:
    """The engine's loader and step: a fresh pass over ``Trainer.loader`` per turn, ``SslcoreStep.step`` per batch."""

    def __init__(self, recipe: Recipe, host: PluginHost, config: BenchConfig) -> None:
        started = time.perf_counter()
        self.stepper = SslcoreStep(recipe, host, config, fixed_views(config, batch_size=2))
        self.setup_s = time.perf_counter() - started  # includes building the decoded-image cache
        self.loader = self.stepper.trainer.loader
        self.batches: Iterator | None = None

    def start(self) -> None:
        self.batches = iter(self.loader)

    def __call__(self) -> float:
        try:
            raw = next(self.batches)
        except StopIteration:  # a short (--quick) training set: the next epoch
            self.start()
            raw = next(self.batches)
        return self.stepper.step(raw)


class LightlyFlow:
    """lightly's example loop: its transform in a ``DataLoader``, batches moved to the device, the model's step."""

    def __init__(
        self, name: str, recipe: Recipe, config: BenchConfig, rows: datasets.Dataset, transform: Any, workers: int
    ) -> None:
        from benchmarks import with_lightly

        self.config = config
        total, per_epoch = 10**6, max(1, len(rows) // config.batch_size)
        self.model = with_lightly.IMPLEMENTATIONS[name](recipe, config, fixed_views(config), total, per_epoch)
        self.loader = DataLoader(
            ParquetImages(rows, transform),
            batch_size=config.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=config.device == "cuda",
        )
        self.batches: Iterator | None = None

    def start(self) -> None:
        self.batches = iter(self.loader)

    def __call__(self) -> float:
        try:
            views, _ = next(self.batches)
        except StopIteration:
            self.start()
            views, _ = next(self.batches)
        device, layout = self.config.torch_device, self.config.memory_format
        loss = self.model.step([view.to(device, non_blocking=True, memory_format=layout) for view in views])
        return float(loss)


def lightly_transform(spec: MethodSpec, recipe: Recipe) -> Any:
    """lightly's transform with the recipe's view settings."""
    views = recipe.components["views"].config
    if spec.name == "dino":
        from lightly.transforms import DINOTransform

        return DINOTransform(
            global_crop_size=views.global_size,
            global_crop_scale=tuple(views.global_scale),
            local_crop_size=views.local_size,
            local_crop_scale=tuple(views.local_scale),
            n_local_views=views.local_crops,
        )
    from lightly.transforms import SimCLRTransform

    return SimCLRTransform(
        input_size=views.size, cj_strength=views.strength, gaussian_blur=views.blur_prob, min_scale=views.scale[0]
    )


def time_flows(
    flows: dict[str, Callable[[], float]], *, steps: int, repeats: int, device: str
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds per step of each flow per repeat (turns rotate), and each flow's first loss."""
    seconds: dict[str, list[float]] = {name: [] for name in flows}
    first: dict[str, float] = {}
    names = list(flows)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            flow = flows[name]
            flow.start()
            loss = flow()  # untimed: worker start-up and the first batch
            first.setdefault(name, loss)
            synchronize(device)
            start = time.perf_counter()
            for _ in range(steps):
                flow()
            synchronize(device)
            seconds[name].append((time.perf_counter() - start) / steps)
    return seconds, first


def measure(spec: MethodSpec, config: BenchConfig, host: PluginHost, settings: Settings) -> dict[str, Any]:
    """One method's end-to-end table: images/s of every candidate and their ratios to sslcore's PIL pipeline."""
    base = sslcore_recipe(spec, config, host, settings, {})
    flows: dict[str, Any] = {
        "sslcore": SslcoreFlow(base, host, config),
        "sslcore_copy": SslcoreFlow(base, host, config),
    }
    notes: dict[str, str] = {}
    for name, changes in VARIANTS.items():
        try:
            recipe = sslcore_recipe(spec, config, host, settings, changes)
        except SslcoreError as error:  # an option this checkout does not have: reported, not fatal
            notes[name] = f"skipped: {' '.join(str(error).split())[:200]}"
            continue
        flows[name] = SslcoreFlow(recipe, host, config)
    if settings.lightly_note is None:
        rows = datasets.load_dataset("parquet", data_files=str(settings.train), split="train")
        rows = rows.select(range(settings.limit)) if settings.limit is not None else rows
        transform = lightly_transform(spec, base)
        flows["lightly"] = LightlyFlow(spec.name, base, config, rows, transform, settings.workers)
    else:
        notes["lightly"] = settings.lightly_note
    seconds, first = time_flows(flows, steps=settings.steps, repeats=settings.repeats, device=config.device)
    rate = {name: config.batch_size / median(values) for name, values in seconds.items()}
    result: dict[str, Any] = {
        "recipe": spec.recipe,
        "backbone": config.backbone,
        "image_size": config.image_size,
        "batch_size": config.batch_size,
        "workers": settings.workers,
        "images_per_s": rate,
        # images/s relative to sslcore's PIL pipeline, and to lightly's: medians of the per-repeat ratios
        "ratio": {name: paired_ratio(seconds["sslcore"], values) for name, values in seconds.items()},
        "ratio_lightly": (
            {name: paired_ratio(seconds["lightly"], values) for name, values in seconds.items()}
            if "lightly" in seconds
            else None
        ),
        "aa_ratio": paired_ratio(seconds["sslcore"], seconds["sslcore_copy"]),
        "spread": {name: spread(values) for name, values in seconds.items()},
        "first_loss": first,
        # the same pixels give the same first loss (exactly on the CPU; cuDNN may differ in the last digits)
        "same_first_loss_cache": (
            math.isclose(first["sslcore_cache"], first["sslcore"], rel_tol=1e-5) if "sslcore_cache" in first else None
        ),
        "setup_s": {name: flow.setup_s for name, flow in flows.items() if isinstance(flow, SslcoreFlow)},
        "repeats": seconds,
    }
    if notes:
        result["notes"] = notes
    return result


def end_to_end(config: BenchConfig, host: PluginHost, settings: Settings) -> dict[str, Any]:
    """The section: one table per method of the device (:data:`E2E_METHODS`); skipped without the data."""
    if not settings.train.is_file():
        return {"skipped": f"no CIFAR-10 Parquet file in {settings.data_dir} (see ../shared/data/README.md)"}
    config = e2e_config(config)
    specs = {"simclr": METHODS["simclr"], "dino": DINO}
    tables = {name: measure(specs[name], config, host, settings) for name in E2E_METHODS[config.device]}
    return {"torch_threads": torch.get_num_threads(), "steps_per_repeat": settings.steps, "methods": tables}
