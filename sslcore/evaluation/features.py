"""Features of a frozen backbone, and the helpers the evaluators share (labels, class count, accuracy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import datasets
import torch
from torch import nn
from torch.utils.data import DataLoader

from sslcore.data.loaders import ViewTransform, make_eval_loader
from sslcore.data.rows import origin_of, set_origin
from sslcore.errors import SslcoreError


@torch.no_grad()
def extract_features(
    backbone: nn.Module, loader: DataLoader, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``backbone`` in eval mode over ``loader`` (batches from :func:`sslcore.data.loaders.collate_views`,
    first view) and return float32 features (N, D) and labels (N,) on ``device`` (labels None if unlabeled).

    The backbone's train / eval mode is restored afterwards.
    """
    was_training = backbone.training
    backbone.eval()
    features: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    try:
        for batch in loader:
            output = backbone(batch["views"][0].to(device, non_blocking=True))
            if output.dim() != 2:
                raise SslcoreError(
                    f"the backbone returned features of shape {tuple(output.shape)}, expected (batch, features)",
                    hint="use a backbone that pools its output (timm: num_classes=0)",
                )
            features.append(output.float())
            if "label" in batch:
                labels.append(batch["label"].to(device, non_blocking=True))
    finally:
        backbone.train(was_training)
    if not features:
        width = getattr(backbone, "num_features", 0)
        return torch.empty(0, width, device=device), None
    return torch.cat(features), (torch.cat(labels) if labels else None)


def dataset_features(
    backbone: nn.Module,
    dataset: datasets.Dataset,
    transform: ViewTransform,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device | str,
) -> torch.Tensor:
    """Features (N, D) of every row of ``dataset``, in order, computed on this process."""
    loader = make_eval_loader(dataset, transform, batch_size=batch_size, num_workers=num_workers)
    features, _ = extract_features(backbone, loader, device)
    return features


def require_labels(dataset: datasets.Dataset, evaluator: str, role: str) -> torch.Tensor:
    """The ``label`` column of ``dataset`` as a LongTensor, or a clear error when the split is unlabeled."""
    if "label" not in dataset.column_names:
        raise SslcoreError(
            f"{evaluator} evaluation needs labels, but the {role} split has none "
            f"(columns: {', '.join(dataset.column_names)})",
            hint="use a labeled dataset (labels = true, label_column) or remove this evaluator",
        )
    return torch.as_tensor(dataset.with_format("numpy", columns=["label"])[:]["label"], dtype=torch.long)


def count_classes(dataset: datasets.Dataset, *label_sets: torch.Tensor) -> int:
    """The number of classes: the ``ClassLabel`` names when present, else the largest label + 1."""
    feature = dataset.features.get("label")
    if isinstance(feature, datasets.ClassLabel):
        return feature.num_classes
    return int(max(int(labels.max()) for labels in label_sets if labels.numel())) + 1


def check_labels(labels: torch.Tensor, num_classes: int, role: str) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise SslcoreError(
            f"the {role} split has labels outside [0, {num_classes}) "
            f"(min {int(labels.min())}, max {int(labels.max())})",
            hint="unlabeled rows are often marked -1: evaluate on a labeled split",
        )


def first_rows(dataset: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    """The first ``limit`` rows, which keep the rows' origin (for corrupt rows)."""
    if limit is None or limit >= len(dataset):
        return dataset
    return set_origin(dataset.select(range(limit)), origin_of(dataset))


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int]) -> dict[int, float]:
    """Percentage of rows whose label is among the ``k`` highest scores, for each k.

    Ties are broken towards the lower class index (a stable sort), so the result is deterministic.
    """
    ranked = torch.sort(scores, dim=1, descending=True, stable=True).indices
    hits = ranked[:, : max(ks)] == labels.view(-1, 1)
    return {k: 100.0 * hits[:, :k].any(dim=1).sum().item() / labels.numel() for k in ks}


class LabelledFeatures(NamedTuple):
    """Features and labels of both splits, the class count checked against both."""

    train_features: torch.Tensor
    train_labels: torch.Tensor
    test_features: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int


def labelled_features(
    backbone: nn.Module,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset,
    transform: ViewTransform,
    *,
    evaluator: str,
    limit_train: int | None,
    limit_eval: int | None,
    batch_size: int,
    num_workers: int,
    device: torch.device | str,
) -> LabelledFeatures:
    """What every protocol on frozen features starts from: limited splits, checked labels, features."""
    train = first_rows(train_dataset, limit_train)
    test = first_rows(eval_dataset, limit_eval)
    if len(train) == 0 or len(test) == 0:
        raise SslcoreError(
            f"{evaluator} evaluation got {len(train)} train and {len(test)} eval images", hint="use non-empty splits"
        )
    train_labels = require_labels(train, evaluator, "train")
    test_labels = require_labels(test, evaluator, "eval")
    num_classes = count_classes(train, train_labels, test_labels)
    check_labels(train_labels, num_classes, "train")
    check_labels(test_labels, num_classes, "eval")
    extract = dict(batch_size=batch_size, num_workers=num_workers, device=device)
    return LabelledFeatures(
        dataset_features(backbone, train, transform, **extract),
        train_labels.to(device),
        dataset_features(backbone, test, transform, **extract),
        test_labels.to(device),
        num_classes,
    )
