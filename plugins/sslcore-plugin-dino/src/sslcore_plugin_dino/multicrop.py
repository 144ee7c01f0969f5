"""A backbone and head applied to a list of crops of several resolutions (official dino ``utils.MultiCropWrapper``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sslcore.errors import SslcoreError


def same_size_runs(crops: Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of consecutive crops with the same spatial size.

    The official wrapper groups consecutive crops by width (``torch.unique_consecutive`` of ``shape[-1]``); grouping
    by height and width is the same for the square crops of multi-crop, and also correct for non-square ones.
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


class MultiCropNetwork(nn.Module):
    """``head(cat(backbone(cat(run)) for each run of same-size crops))``: one backbone pass per resolution and one
    head pass over all crops, so BatchNorm in the backbone sees one resolution at a time and the head all crops
    together, as the official code. The output holds crop 0's batch, then crop 1's, ...: ``(len(crops) * B, K)``.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: Sequence[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        features = [self.backbone(torch.cat(list(crops[start:end]))) for start, end in same_size_runs(crops)]
        return self.head(torch.cat(features))
