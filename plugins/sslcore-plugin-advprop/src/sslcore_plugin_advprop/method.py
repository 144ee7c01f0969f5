"""Supervised classification: a backbone and a linear classifier trained with cross-entropy (the setting AdvProp
improves, Xie et al. 2020 Eq. 3, whose adversarial term the engine adds from the recipe's ``[attack]``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from sslcore.errors import SslcoreError
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo
from sslcore_plugin_advprop.config import SupervisedConfig


class SupervisedMethod(Method):
    """Cross-entropy of a linear classifier on the backbone's features of view 0; the mean over this process's
    batch, so data-parallel gradient averaging gives the mean over the global batch."""

    def __init__(self, backbone: nn.Module, config: SupervisedConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.num_features, config.num_classes)
        self.label_smoothing = config.label_smoothing

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:  # type: ignore[override]
        if batch.label is None:
            raise SslcoreError(
                "the supervised method needs class labels and this dataset has none", hint="train on a labelled dataset"
            )
        logits = self.classifier(self.backbone(batch.views[0]))
        loss = F.cross_entropy(logits.float(), batch.label, label_smoothing=self.label_smoothing)
        accuracy = (logits.detach().argmax(dim=1) == batch.label).float().mean()
        return MethodOutput(loss, logs={"train_top1": accuracy * 100})


def build_supervised(config: SupervisedConfig, parts: MethodParts) -> SupervisedMethod:
    """A backbone from ``[backbone]`` and a linear classifier over ``num_classes``."""
    return SupervisedMethod(parts.backbone(), config)
