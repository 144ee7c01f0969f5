"""Evaluation DataLoaders of views: a source's dataset plus a view transform, run in worker processes.

The transform is attached with ``datasets.Dataset.with_transform``: a worker reads a batch of rows, decodes
only those images and applies the views, so neither decoding nor augmentation touches the main process.
Everything attached (``ApplyViews``, the transforms) is a module-level class, so the dataset pickles for
workers started with ``spawn`` as well as ``fork``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sslcore.errors import SslcoreError

ViewTransform = Callable[[Image.Image], list[torch.Tensor]]


class ApplyViews:
    """``with_transform`` formatter: a batch of rows -> ``views`` (a list of tensors per row), ``index``, ``label``."""

    def __init__(self, transform: ViewTransform) -> None:
        self.transform = transform

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"views": [self.transform(image) for image in batch["image"]]}
        for key in ("index", "label"):
            if key in batch:
                out[key] = batch[key]
        return out


def with_views(dataset: datasets.Dataset, transform: ViewTransform) -> datasets.Dataset:
    """``dataset`` whose rows read as ``{"views": [...], "index": i, "label": y}`` (label when present)."""
    if "image" not in dataset.column_names:
        raise SslcoreError(
            f"dataset has no 'image' column (columns: {', '.join(dataset.column_names)})",
            hint="build datasets with a registered dataset source",
        )
    columns = [c for c in ("image", "index", "label") if c in dataset.column_names]
    return dataset.with_transform(ApplyViews(transform), columns=columns)


def collate_views(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows -> ``views``: one (B, C, H, W) tensor per view position (sizes may differ between positions),
    ``index``: LongTensor (B,) and ``label``: LongTensor (B,) when the rows have labels."""
    if not batch:
        raise ValueError("collate_views got an empty batch")
    num_views = len(batch[0]["views"])
    if any(len(row["views"]) != num_views for row in batch):
        raise ValueError("every row of a batch must have the same number of views")
    views = []
    for position in range(num_views):
        group = [row["views"][position] for row in batch]
        shapes = {tuple(view.shape) for view in group}
        if len(shapes) > 1:
            raise SslcoreError(
                f"view {position} has different shapes within a batch: {sorted(shapes)}",
                hint="images of different sizes need a transform with a fixed size (e.g. the eval view's size)",
            )
        views.append(torch.stack(group))
    out: dict[str, Any] = {"views": views}
    for key in ("index", "label"):
        if key in batch[0]:
            out[key] = torch.tensor([row[key] for row in batch], dtype=torch.long)
    return out


def make_eval_loader(
    dataset: datasets.Dataset, transform: ViewTransform, *, batch_size: int, num_workers: int
) -> DataLoader:
    """A DataLoader over ``dataset`` in order, keeping every row (no shuffle, no dropped last batch)."""
    return DataLoader(
        with_views(dataset, transform),
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=num_workers,
        collate_fn=collate_views,
        pin_memory=torch.cuda.is_available(),
    )
