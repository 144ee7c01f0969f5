"""Evaluation DataLoaders of views: a source's dataset plus a view transform, run in worker processes.

:class:`RowViews` reads a row (:func:`sslcore.data.rows.read_row`: a corrupt image fails or is skipped as
``[data] corrupt`` says) and applies the views, in a worker: neither decoding nor augmentation touches the main
process. Everything it holds is a module-level class, so it pickles for workers started with ``spawn`` as well as
``fork``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from sslcore.data.rows import read_row
from sslcore.errors import SslcoreError

ViewTransform = Callable[[Image.Image], list[torch.Tensor]]


class RowViews(Dataset):
    """``dataset``'s rows as ``{"views": [...], "index": i, "label": y}`` (label when present)."""

    def __init__(self, dataset: datasets.Dataset, transform: ViewTransform) -> None:
        if "image" not in dataset.column_names:
            raise SslcoreError(
                f"dataset has no 'image' column (columns: {', '.join(dataset.column_names)})",
                hint="build datasets with a registered dataset source",
            )
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row, _ = read_row(self.dataset, index)
        item = {"views": self.transform(row["image"]), "index": index}
        if "label" in row:
            item["label"] = row["label"]
        return item


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
        RowViews(dataset, transform),
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=num_workers,
        collate_fn=collate_views,
        pin_memory=torch.cuda.is_available(),
    )
