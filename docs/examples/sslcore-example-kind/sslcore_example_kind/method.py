"""``noisy_pair``: two views, each noised by the recipe's ``[noise]``, through one backbone; the loss is the
symmetric negative cosine between their features with a stop-gradient on the other side (SimSiam without heads)."""

from __future__ import annotations

from importlib.resources import files

import attrs
import torch.nn.functional as F

import sslcore


@attrs.frozen(kw_only=True)
class NoisyPairConfig:
    """No options."""


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


@sslcore.hookimpl
def sslcore_register_methods(registry):
    registry.add("noisy_pair", build, NoisyPairConfig)


@sslcore.hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_example_kind") / "recipes")
