"""The multi-crop forward pass of SwAV (Caron et al. 2020, sec. 3.2; official ``src/resnet50.py`` ``forward``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def multicrop_forward(network: nn.Module, views: Sequence[torch.Tensor]) -> torch.Tensor:
    """``network`` applied to every view; returns the outputs stacked in view order, ``(sum of batches, D)``.

    Consecutive views of one resolution are concatenated and pass the network together, as the official
    ``ResNet.forward`` does (``torch.unique_consecutive`` over the crop sizes): with globals first and locals
    after, that is one pass for the 224 px crops and one for the 96 px crops. BatchNorm statistics are
    therefore those of all crops of one resolution, as in the official code.
    """
    if not views:
        raise ValueError("multicrop_forward needs at least one view")
    outputs = []
    start = 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape[1:] == views[start].shape[1:]:
            end += 1
        outputs.append(network(torch.cat(list(views[start:end]))))
        start = end
    return torch.cat(outputs)
