"""A backbone and head applied to a list of crops of several resolutions (official dino ``utils.MultiCropWrapper``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sslcore.components.multicrop import multicrop_forward


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
        return self.head(multicrop_forward(self.backbone, crops))
