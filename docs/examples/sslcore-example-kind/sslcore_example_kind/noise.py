"""The ``noise`` kind, added to sslcore from outside, and one noise of that kind: ``gaussian``."""

from __future__ import annotations

import attrs
import torch
from torch import nn

import sslcore
from sslcore_example_kind import hookspecs


@attrs.frozen(kw_only=True)
class GaussianNoiseConfig:
    """``std``: the standard deviation of the noise, in the units of the normalised images."""

    std: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))


class GaussianNoise(nn.Module):
    """Adds Gaussian noise to images while training; the identity in eval mode."""

    def __init__(self, config: GaussianNoiseConfig) -> None:
        super().__init__()
        self.std = config.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + self.std * torch.randn_like(images) if self.training else images


@sslcore.hookimpl
def sslcore_add_kinds(kinds):
    # Recipes name one noise in [noise] or several in [noises.<name>]; factories take no runtime arguments.
    kinds.add("noise", hookspecs.sslcore_register_noises, table="noise", named="noises")


@sslcore.hookimpl
def sslcore_register_noises(registry):
    registry.add("gaussian", GaussianNoise, GaussianNoiseConfig)
