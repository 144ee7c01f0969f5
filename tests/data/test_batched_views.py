"""The batched view pipeline (``[views] pipeline = "batched"``) against the PIL reference, on CIFAR-10 images.

Tolerances, for 300 images (600 views): the same per-sample seed gives both pipelines the same parameters, so their
views differ only by resampling and rounding (mean absolute difference < 0.06 in normalized units, about 3.5 grey
levels; different parameters give about 0.8); per-channel pixel means within 0.02 and standard deviations within 3%
(the crops of the batched path resample bilinearly, a bicubic reference is 1.3% sharper); crop area and log aspect
ratio quantiles within 0.05 of torchvision's ``RandomResizedCrop.get_params``; each operation's frequency within 4
binomial standard deviations of its probability.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import transforms

from sslcore.data import batched
from sslcore.data.sources import ParquetSourceConfig, build_parquet
from sslcore.data.views import (
    BYOLViewsConfig,
    MoCoV1ViewsConfig,
    MultiCropViewsConfig,
    SimCLRViewsConfig,
    build_byol,
    build_mocov1,
    build_multicrop,
    build_simclr,
)
from sslcore.engine.data import EpochSampler, TrainingViews, seeded_rng
from sslcore.engine.views import ready_views, training_collate
from sslcore.testing import pil_and_batched_views, run_distributed

CIFAR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10"
needs_cifar = pytest.mark.skipif(not CIFAR.is_dir(), reason=f"CIFAR-10 parquet files not found at {CIFAR}")
N = 300
CPU = torch.device("cpu")

BUILDS = {
    "simclr": lambda pipeline: build_simclr(SimCLRViewsConfig(size=32, blur_prob=0.5, pipeline=pipeline)),
    "byol": lambda pipeline: build_byol(BYOLViewsConfig(size=32, blur_probs=(1.0, 0.1), pipeline=pipeline)),
    "mocov1": lambda pipeline: build_mocov1(MoCoV1ViewsConfig(size=32, pipeline=pipeline)),
    # 12 px views of 32 px images: 92% of the crops shrink (roi_align) where every other case enlarges (grid_sample)
    "shrinking": lambda pipeline: build_simclr(SimCLRViewsConfig(size=12, pipeline=pipeline)),
    "multicrop": lambda pipeline: build_multicrop(
        MultiCropViewsConfig(style="dino", global_size=32, local_crops=2, pipeline=pipeline)
    ),
}


def cifar(limit: int = N):
    return build_parquet(ParquetSourceConfig(train=str(CIFAR / "train.parquet"), train_limit=limit), "train")


@pytest.fixture(scope="module")
def images():
    if not CIFAR.is_dir():
        pytest.skip(f"CIFAR-10 parquet files not found at {CIFAR}")
    return [row["image"] for row in cifar()]


def both_pipelines(name: str, images) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """The PIL views, the batched views and the batched parameters, each sample seeded by its index."""
    return pil_and_batched_views(BUILDS[name]("pil"), BUILDS[name]("batched"), images)


@needs_cifar
@pytest.mark.parametrize("name", sorted(BUILDS))
def test_same_seed_same_views_as_the_pil_pipeline(name, images):
    reference, views, _ = both_pipelines(name, images)
    assert len(views) == len(reference)
    for ref, view in zip(reference, views):
        assert view.shape == ref.shape
        assert (view - ref).abs().mean() < 0.06
        torch.testing.assert_close(view.mean((0, 2, 3)), ref.mean((0, 2, 3)), atol=0.02, rtol=0)
        torch.testing.assert_close(view.std((0, 2, 3)), ref.std((0, 2, 3)), atol=0, rtol=0.03)


def _binomial_ok(hits: torch.Tensor, p: float) -> bool:
    n = hits.numel()
    return abs(hits.float().mean().item() - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-9


@needs_cifar
def test_parameter_distributions(images):
    """SimCLR's views at strength 0.5 with blur p 0.5, and BYOL's second view (solarization p 0.2)."""
    _, _, params = both_pipelines("simclr", images)
    rows = params.reshape(-1, batched.NUM_PARAMS)
    area = rows[:, 2] * rows[:, 3] / (32 * 32)
    log_ratio = (rows[:, 3] / rows[:, 2]).log()
    torch.manual_seed(1234)
    boxes = torch.tensor(
        [transforms.RandomResizedCrop.get_params(images[0], [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(len(rows))],
        dtype=torch.float32,
    )
    quantiles = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
    torch.testing.assert_close(
        area.quantile(quantiles), (boxes[:, 2] * boxes[:, 3] / 1024).quantile(quantiles), atol=0.05, rtol=0
    )
    torch.testing.assert_close(
        log_ratio.quantile(quantiles), (boxes[:, 3] / boxes[:, 2]).log().quantile(quantiles), atol=0.05, rtol=0
    )
    for column, p in ((batched.FLIP, 0.5), (batched.JITTER, 0.8), (batched.GRAY, 0.2)):
        assert _binomial_ok(rows[:, column] > 0, p), column
    assert _binomial_ok(rows[:, batched.SIGMA] > 0, 0.5)
    sigma = rows[rows[:, batched.SIGMA] > 0, batched.SIGMA]
    assert 0.1 <= sigma.min() and sigma.max() <= 2.0 and sigma.max() - sigma.min() > 1.5

    jittered = rows[rows[:, batched.JITTER] > 0]
    factors, order = jittered[:, batched.FACTORS], jittered[:, batched.ORDER].long()
    for op, (low, high) in enumerate([(0.6, 1.4)] * 3 + [(-0.1, 0.1)]):  # strength 0.5: (0.4, 0.4, 0.4, 0.1)
        assert low <= factors[:, op].min() < low + 0.05 and high - 0.05 < factors[:, op].max() <= high
    assert (order.sort(1).values == torch.arange(4)).all()
    assert _binomial_ok(order[:, 0] == 3, 0.25)  # every operation as often first

    _, _, byol = both_pipelines("byol", images)
    assert (byol[:, 0, batched.SOLARIZE] == 0).all() and _binomial_ok(byol[:, 1, batched.SOLARIZE] > 0, 0.2)
    assert (byol[:, 0, batched.SIGMA] > 0).all() and _binomial_ok(byol[:, 1, batched.SIGMA] > 0, 0.1)


@needs_cifar
def test_views_depend_on_the_seed_only_not_on_the_batch(images):
    transform = BUILDS["simclr"]("batched")

    def views(indices: list[int], seed: int = 0) -> list[torch.Tensor]:
        draws = []
        for index in indices:
            with seeded_rng(seed + index):
                draws.append(transform(images[index]))
        return batched.batch_draws(draws, transform).finish()

    whole = views(list(range(8)))
    halves = [views(list(range(4))), views(list(range(4, 8)))]
    for position, view in enumerate(whole):
        assert torch.equal(view, torch.cat([half[position] for half in halves]))
        assert torch.equal(view, views(list(range(8)))[position])
    assert not torch.equal(whole[0], views(list(range(8)), seed=100)[0])


def test_images_of_different_sizes_pad_with_their_edges():
    small = torch.arange(2 * 3, dtype=torch.uint8).view(1, 2, 3).expand(3, 2, 3)
    large = torch.zeros(3, 4, 5, dtype=torch.uint8)
    out = batched.stack_pixels([small, large])
    assert out.shape == (2, 3, 4, 5)
    assert torch.equal(out[0, :, :2, :3], small) and (out[0, :, :2, 3:] == small[:, :, -1:]).all()
    assert (out[0, :, 2:] == out[0, :, 1:2]).all() and torch.equal(out[1], large)


def _first_batch(batch: int, prepare=lambda loader: loader, device=CPU) -> list[torch.Tensor]:
    """Indices and views of the first step, through the engine's sampler, dataset and collate (and ``prepare``)."""
    transform = BUILDS["simclr"]("batched")
    loader = prepare(
        DataLoader(
            TrainingViews(cifar(64), transform, seed=7),
            batch_size=batch,
            sampler=EpochSampler(64, 64, seed=7),
            num_workers=0,
            drop_last=True,
            collate_fn=training_collate(transform, device),
        )
    )
    raw = next(iter(loader))
    return [raw["index"], *ready_views(raw["views"])]


def _process_batch(rank: int, world: int, batch: int) -> list:
    """This process's first batch with Accelerate's sharding (a process's batch is its slice of the global one)."""
    from accelerate import Accelerator

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    accelerator = Accelerator(cpu=True)
    return [accelerator.num_processes, *_first_batch(batch, accelerator.prepare, accelerator.device)]


@needs_cifar
@pytest.mark.distributed
def test_two_processes_see_the_views_of_one_process_with_twice_the_batch():
    ranks = run_distributed(_process_batch, 4)
    assert [r[0] for r in ranks] == [2, 2]
    single = _first_batch(8)
    assert len(single) == 3 and len(single[0]) == 8
    for position, expected in enumerate(single):
        assert torch.equal(torch.cat([r[position + 1] for r in ranks]), expected)


def test_device_batches_carry_pending_views():
    """On an accelerator the loader leaves the views pending; moved with ``.to`` they are made where they land."""
    transform = batched.BatchedViews([BUILDS["mocov1"]("batched").specs[0]])
    image = torch.randint(0, 256, (3, 40, 36), dtype=torch.uint8)
    from PIL import Image

    item = {"views": transform(Image.fromarray(image.permute(1, 2, 0).numpy())), "index": 0, "skipped": 0}
    pending = training_collate(transform, torch.device("meta"))([item, item])
    assert isinstance(pending["views"], batched.PendingViews)
    views = ready_views(pending["views"].to("cpu"))
    done = training_collate(transform, torch.device("cpu"))([item, item])["views"]
    assert isinstance(done, list) and torch.equal(views[0], done[0]) and views[0].shape == (2, 3, 32, 32)
