"""The ``gaussian`` noise: the module a run builds (registered by :mod:`sslcore_example_kind.noise`)."""

from __future__ import annotations

import torch
from torch import nn

from sslcore_example_kind.noise import GaussianNoiseConfig


class GaussianNoise(nn.Module):
    """Adds Gaussian noise to images while training; the identity in eval mode."""

    def __init__(self, config: GaussianNoiseConfig) -> None:
        super().__init__()
        self.std = config.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + self.std * torch.randn_like(images) if self.training else images
