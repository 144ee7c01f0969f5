"""The ``masked_conv`` context network: the PixelCNN-style residual stack of CPC v2 (Hénaff et al. 2020, appendix
A.2 pseudo-code ``pixelCNN(latents)``).

Each of the ``num_blocks`` residual blocks is: 1x1 conv to ``hidden_dim``, ReLU; 1x3 conv (same padding); one row of
zeros padded on top, then a 2x1 convolution without padding, ReLU; 1x1 conv back to the input width; added to its
input. A final ReLU follows the stack. The (1x3, pad-top, 2x1) pair is a 2x3 kernel over rows i-1 and i: a 3x3
convolution with the row below masked out, so the output at row i sees input rows <= i only, as a masked
(PixelCNN) convolution, and the receptive field grows by one row per block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslcore_plugin_cpc.config import MaskedConvContextConfig


class _CausalBlock(nn.Module):
    """``x + expand(relu(column(pad_top(row(relu(reduce(x)))))))``: row i of the output sees rows i-1 and i."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(dim, hidden, 1)
        self.row = nn.Conv2d(hidden, hidden, (1, 3), padding=(0, 1))
        self.column = nn.Conv2d(hidden, hidden, (2, 1))
        self.expand = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.row(F.relu(self.reduce(x)))
        h = F.relu(self.column(F.pad(h, (0, 0, 1, 0))))  # Pad([[0,0],[1,0],...]) then a VALID 2x1 conv
        return x + self.expand(h)


class MaskedConvContext(nn.Module):
    """CPC v2's context network: a causal residual conv stack mapping ``(B, D, H, W)`` to ``(B, D, H, W)``."""

    def __init__(self, in_dim: int, config: MaskedConvContextConfig) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(_CausalBlock(in_dim, config.hidden_dim) for _ in range(config.num_blocks)))
        self.out_dim = in_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.relu(self.blocks(features))


def build_masked_conv(config: MaskedConvContextConfig, in_dim: int) -> MaskedConvContext:
    """CPC v2's PixelCNN-style context: residual (1x3, pad-top 2x1) conv blocks; row i sees rows <= i."""
    return MaskedConvContext(in_dim, config)
