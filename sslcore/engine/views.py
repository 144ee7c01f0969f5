"""Where the batched view pipeline does its pixel work (:mod:`sslcore.data.batched`).

On an accelerator, the loader hands the engine each batch's uint8 pixels and parameters (:class:`PendingViews`,
moved to the device with the batch) and the engine makes the views there, just before the step. On the CPU, the
loader's workers make them while the step runs (measured faster than in the step's process: ``python -m
benchmarks.views``). The PIL pipeline makes its views per sample and is collated as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from sslcore.data.batched import BatchTransform, PendingViews, batch_draws
from sslcore.engine.data import collate


def _collate_batched(items: list[dict[str, Any]], views: BatchTransform, finish: bool) -> dict[str, Any]:
    batch = collate([{**item, "views": []} for item in items])
    pending = batch_draws([item["views"] for item in items], views)
    batch["views"] = pending.finish() if finish else pending
    return batch


def training_collate(transform: Any, device: torch.device) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """The loader's ``collate_fn`` for the recipe's view ``transform`` on ``device``."""
    if isinstance(transform, BatchTransform):
        return partial(_collate_batched, views=transform, finish=device.type == "cpu")
    return collate


def ready_views(views: list[torch.Tensor] | PendingViews) -> list[torch.Tensor]:
    """A batch's views, made on its device if the loader left them pending."""
    return views.finish() if isinstance(views, PendingViews) else views
