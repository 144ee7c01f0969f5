"""The evaluator contract and the built-in evaluators: ``knn`` and ``linear``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from sslcore import hookimpl
from sslcore.evaluation.evaluator_configs import KnnConfig, LinearProbeConfig

if TYPE_CHECKING:  # the evaluators themselves are imported on first build: `sslcore list` needs no torch
    import datasets
    import torch
    from torch import nn


@runtime_checkable
class Evaluator(Protocol):
    """Scores a frozen backbone: ``evaluate(backbone, train_dataset, eval_dataset, device) -> {metric: value}``.

    The datasets are a source's ``train`` and ``test`` splits (columns ``image``, ``label``, ``index``); the
    backbone maps a batch of images to (batch, features). The engine calls it on the main process only; it
    must not use collective operations. The backbone's train / eval mode is left as it was.
    """

    def evaluate(
        self,
        backbone: nn.Module,
        train_dataset: datasets.Dataset,
        eval_dataset: datasets.Dataset,
        device: torch.device | str,
    ) -> dict[str, float]: ...


@hookimpl
def sslcore_register_evaluators(registry):
    registry.add("knn", "sslcore.evaluation.knn:build_knn", KnnConfig)
    registry.add("linear", "sslcore.evaluation.linear_probe:build_linear_probe", LinearProbeConfig)
