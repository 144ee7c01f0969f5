"""The Wide ResNet of JEM and HDGE (wgrathwohl/JEM ``wideresnet.py``, copied by forhaoliu/hybrid-discriminative-
generative): Zagoruyko and Komodakis's WRN-d-k for 32 px images with leaky ReLUs (slope 0.2), biased convolutions
and, by default, no normalisation ("none works fine": BatchNorm's batch statistics disturb SGLD sampling).

timm has no CIFAR WRN-28-10 (only the ImageNet ``wide_resnet50_2``), hence this backbone. As the official code, the
layers keep PyTorch's default initialisation (``conv_init`` there is never applied). The features are averaged
over the last feature map: ``avg_pool2d(out, 8)`` in the official code, which is the global average at 32 px; the
adaptive pooling here also accepts smaller test images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslcore_plugin_jem.config import Norm, WideResNetConfig


def _norm(channels: int, norm: Norm) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels, momentum=0.9)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class WideBasic(nn.Module):
    """``conv2(act(norm2(dropout(conv1(act(norm1(x))))))) + shortcut(x)``, the official ``wide_basic``."""

    def __init__(self, in_planes: int, planes: int, stride: int, config: WideResNetConfig) -> None:
        super().__init__()
        self.act = nn.LeakyReLU(config.leak)
        self.bn1 = _norm(in_planes, config.norm)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=True)
        self.dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.bn2 = _norm(planes, config.norm)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=True)
        needs_projection = stride != 1 or in_planes != planes
        self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=True) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(self.act(self.bn1(x))))
        return self.conv2(self.act(self.bn2(out))) + self.shortcut(x)


class WideResNet(nn.Module):
    """WRN-d-k features ``(B, 64 k)`` of ``(B, 3, H, W)`` images."""

    def __init__(self, config: WideResNetConfig) -> None:
        super().__init__()
        blocks = (config.depth - 4) // 6
        stages = [16, 16 * config.width, 32 * config.width, 64 * config.width]
        self.conv1 = nn.Conv2d(3, stages[0], kernel_size=3, padding=1, bias=True)
        layers, in_planes = [], stages[0]
        for planes, stride in zip(stages[1:], (1, 2, 2), strict=True):
            layer = []
            for i in range(blocks):
                layer.append(WideBasic(in_planes, planes, stride if i == 0 else 1, config))
                in_planes = planes
            layers.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3 = layers
        self.bn1 = _norm(stages[3], config.norm)
        self.act = nn.LeakyReLU(config.leak)
        self.num_features = stages[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return F.adaptive_avg_pool2d(self.act(self.bn1(out)), 1).flatten(1)


def build_wide_resnet(config: WideResNetConfig) -> WideResNet:
    """JEM's Wide ResNet (WRN-28-10, leaky ReLU, no normalisation by default) for 32 px images."""
    return WideResNet(config)
