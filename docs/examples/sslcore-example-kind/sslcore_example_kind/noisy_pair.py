"""The ``noisy_pair`` method itself: what a run builds (registered by :mod:`sslcore_example_kind.method`)."""

from __future__ import annotations

import torch.nn.functional as F

import sslcore
from sslcore_example_kind.method import NoisyPairConfig


class NoisyPair(sslcore.Method):
    def __init__(self, parts: sslcore.MethodParts) -> None:
        super().__init__()
        self.backbone = parts.backbone()
        self.noise = parts.component("noise")  # any kind, by name: built from the recipe's [noise]

    def forward(self, batch: sslcore.Batch, step: sslcore.StepInfo) -> sslcore.MethodOutput:
        first, second = (self.backbone(self.noise(view)) for view in batch.views[:2])
        similarity = F.cosine_similarity(first, second.detach()) + F.cosine_similarity(second, first.detach())
        return sslcore.MethodOutput(-similarity.mean() / 2)


def build(config: NoisyPairConfig, parts: sslcore.MethodParts) -> NoisyPair:
    """Two noised views, one backbone, negative cosine (uses the noise kind)."""
    return NoisyPair(parts)
