"""Multi-crop forward passes (SwAV, Caron et al. 2020, sec. 3.2; DINO, Caron et al. 2021): crops of one resolution
pass the network together, as the official SwAV ``src/resnet50.py`` ``forward`` and DINO ``utils.MultiCropWrapper``
do (``torch.unique_consecutive`` over the crop sizes), so BatchNorm statistics are those of all crops of one
resolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sslcore.errors import SslcoreError


def same_size_runs(crops: Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of consecutive crops with the same spatial size.

    The official code groups consecutive crops by width; grouping by height and width is the same for the square
    crops of multi-crop, and also correct for non-square ones.
    """
    if not crops:
        raise SslcoreError("a multi-crop forward needs at least one crop")
    runs: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(crops) + 1):
        if index == len(crops) or crops[index].shape[-2:] != crops[start].shape[-2:]:
            runs.append((start, index))
            start = index
    return runs


def multicrop_forward(network: nn.Module, crops: Sequence[torch.Tensor]) -> torch.Tensor:
    """``network`` applied to each run of same-size crops; the outputs in crop order, ``(sum of batches, D)``."""
    return torch.cat([network(torch.cat(list(crops[start:end]))) for start, end in same_size_runs(crops)])
