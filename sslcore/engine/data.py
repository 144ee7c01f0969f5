"""Training data for the engine: an epoch-aware sampler and per-sample seeded view generation.

Each sample's augmentation is seeded by (run seed, epoch, index), so the views of a sample do not depend on the
number of processes or workers, nor on whether the run was interrupted and resumed. A sample whose image is corrupt
fails or, with ``[data] corrupt = "skip"``, takes the next readable row's image and label (the same on every process
and resume); each batch counts such samples in ``skipped``, which the engine sums into ``summary.json``, and
carries the first failing row's error as ``fault`` when the failure is deferred (several processes).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from sslcore.data.rows import read_row, read_row_deferring


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` for the first ``length`` entries of a permutation of all ``num_samples`` indices,
    seeded by ``seed + epoch`` (the identity when not shuffling): every sample can be drawn in every epoch, and
    ``length`` (whole global batches) keeps all processes at the same number of steps."""

    def __init__(self, num_samples: int, length: int, seed: int, shuffle: bool = True) -> None:
        self.num_samples = num_samples
        self.length = min(length, num_samples)
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.num_samples)
        return iter((self.epoch, index) for index in order[: self.length].tolist())

    def __len__(self) -> int:
        return self.length


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % (2**63 - 1)


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed torch's (CPU) and Python's global RNGs for the block, restoring them afterwards."""
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # torch.manual_seed also seeds every accelerator: 0.2 ms a call
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)


class TrainingViews(Dataset):
    """Turns dataset rows into ``{"views", "index", "label", "skipped"}`` with the view transform, seeded per sample
    (``skipped``: 1 when a corrupt row was replaced by the next readable one). With ``defer_faults`` (several
    processes) a corrupt row that fails the run is carried as the sample's ``fault`` instead of raised
    (:func:`sslcore.data.rows.read_row_deferring`)."""

    def __init__(self, dataset: Any, transform: Callable[[Any], list[torch.Tensor]], seed: int,
                 defer_faults: bool = False) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.defer_faults = defer_faults
        self.has_labels = "label" in dataset.column_names

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        if self.defer_faults:
            row, source, fault = read_row_deferring(self.dataset, index)
        else:
            (row, source), fault = read_row(self.dataset, index), None
        with seeded_rng(sample_seed(self.seed, epoch, index)):
            views = self.transform(row["image"])
        item = {"views": views, "index": index, "skipped": int(source != index and fault is None)}
        if fault is not None:
            item["fault"] = fault.message
        if self.has_labels:
            item["label"] = row["label"]
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack views position-wise (views of different sizes stay separate tensors), indices and labels; sum the
    samples that stand in for corrupt rows."""
    batch = {
        "views": [torch.stack(group) for group in zip(*(item["views"] for item in items))],
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
        "skipped": torch.tensor(sum(item["skipped"] for item in items), dtype=torch.long),
    }
    if "label" in items[0]:
        batch["label"] = torch.tensor([item["label"] for item in items], dtype=torch.long)
    faults = [item["fault"] for item in items if "fault" in item]
    if faults:
        batch["fault"] = faults[0]
    return batch
