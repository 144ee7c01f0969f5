"""CMC's two views of one image: a colour space split into a luminance channel and two chrominance channels.

The official code converts each crop in the data loader (HobbitLong/CMC ``dataset.py``, ``RGB2Lab`` / ``RGB2YCbCr``:
``skimage.color`` on the uint8 image), then ``transforms.Normalize`` with the per-space mean and std of
``train_CMC.py`` ``get_train_loader``. Here the conversion is a module applied inside the network to ordinary RGB
views, so training, the kNN monitor and the exported encoders all take RGB images; it reproduces ``skimage.color``
in float32 (``rgb2lab``: sRGB -> linear RGB -> XYZ -> CIE Lab with the D65 / 2 degree white point).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from sslcore.export import ConcatFeatures
from sslcore_plugin_cmc.config import ColorSpaceName

#: The channels of each view: L (or Y) to one encoder, ab (or CbCr, DbDr) to the other.
MODALITIES: dict[str, slice] = {"l": slice(0, 1), "ab": slice(1, 3)}

# skimage.color.colorconv: xyz_from_rgb (sRGB primaries, D65) and the D65 / 2 degree reference white.
_XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_D65_WHITE = (0.95047, 1.0, 1.08883)

# The linear spaces: skimage's matrix (for RGB in [0, 1]) and offset.
_LINEAR: dict[str, tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]] = {
    "ycbcr": (((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214)), (16.0, 128.0, 128.0)),
    "ydbdr": (((0.299, 0.587, 0.114), (-0.45, -0.883, 1.333), (-1.333, 1.116, 0.217)), (0.0, 0.0, 0.0)),
}

# Per-space normalisation of the converted channels: Lab and YCbCr from train_CMC.py get_train_loader (Lab: each
# channel's range mapped to [-1, 1]); YDbDr from PyContrast datasets/util.py build_transforms (modal 'CMC').
_NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "lab": (((0 + 100) / 2, (-86.183 + 98.233) / 2, (-107.857 + 94.478) / 2),
            ((100 - 0) / 2, (86.183 + 98.233) / 2, (107.857 + 94.478) / 2)),
    "ycbcr": ((116.151, 121.080, 132.342), (109.500, 111.855, 111.964)),
    "ydbdr": ((0.457, -0.082, -0.052), (0.500, 1.331, 1.333)),
}


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``skimage.color.rgb2lab`` of ``(B, 3, H, W)`` sRGB in [0, 1]: L in [0, 100], a and b about [-128, 127].

    Differentiable: each branch of the two piecewise functions is evaluated where it is finite.
    """
    linear = torch.where(rgb > 0.04045, ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    white = rgb.new_tensor(_D65_WHITE).view(1, 3, 1, 1)
    xyz = torch.einsum("ij,bjhw->bihw", rgb.new_tensor(_XYZ_FROM_RGB), linear) / white
    f = torch.where(xyz > 0.008856, xyz.clamp(min=0.008856) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f.unbind(dim=1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def srgb_to_linear_space(rgb: torch.Tensor, space: str) -> torch.Tensor:
    """``skimage.color.rgb2ycbcr`` / ``rgb2ydbdr`` of ``(B, 3, H, W)`` sRGB in [0, 1]."""
    matrix, offset = _LINEAR[space]
    return torch.einsum("ij,bjhw->bihw", rgb.new_tensor(matrix), rgb) + rgb.new_tensor(offset).view(1, 3, 1, 1)


class ColorSpace(nn.Module):
    """RGB images normalised with ``mean`` / ``std`` (the views' normalisation) -> ``space``'s three channels,
    normalised as CMC normalises them, in float32 whatever the autocast (Lab's cube roots need the precision)."""

    def __init__(self, space: ColorSpaceName, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if space not in _NORMALIZATION:
            raise ValueError(f"unknown colour space {space!r}; known: {', '.join(sorted(_NORMALIZATION))}")
        self.space = space
        space_mean, space_std = _NORMALIZATION[space]
        # Constants, not state: non-persistent, so they stay out of checkpoints and exported files.
        self.register_buffer("rgb_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("space_mean", torch.tensor(space_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("space_std", torch.tensor(space_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(images.device.type, enabled=False):
            rgb = images.float() * self.rgb_std + self.rgb_mean
            converted = srgb_to_lab(rgb) if self.space == "lab" else srgb_to_linear_space(rgb, self.space)
            return (converted - self.space_mean) / self.space_std

    def extra_repr(self) -> str:
        return f"space={self.space}"


class Modality(nn.Module):
    """An encoder of one view on RGB input: the colour conversion, its channels (``MODALITIES[name]``), the
    backbone. ``num_features`` is the backbone's."""

    def __init__(self, color: ColorSpace, name: str, backbone: nn.Module) -> None:
        super().__init__()
        self.color, self.channels, self.backbone = color, MODALITIES[name], backbone
        self.num_features = int(backbone.num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.color(images)[:, self.channels])


def rgb_features(color: ColorSpace, backbones: Mapping[str, nn.Module]) -> ConcatFeatures:
    """The concatenated features of the L and ab backbones on RGB images (the paper's evaluation protocol)."""
    return ConcatFeatures({name: Modality(color, name, backbones[name]) for name in MODALITIES})
