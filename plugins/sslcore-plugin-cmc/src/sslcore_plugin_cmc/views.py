"""The ``cmc`` view transform: CMC's crops as RGB tensors (the colour conversion is part of the network).

The official ``train_CMC.py`` (``get_train_loader``) crops (``RandomResizedCrop(224, scale=(crop_low, 1))``, 0.08 for
ResNets on ImageNet, 0.2 otherwise) and flips, with no colour jitter and no grayscale: a grey image has empty ab
channels. PyContrast's CMC (``datasets/util.py`` ``build_transforms``, aug ``'C'``) adds ColorJitter(0.4, 0.4, 0.4,
0.1) on every crop. The built-in views all turn some crops grey, hence a view transform of its own.
"""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from sslcore.data.augment import IMAGENET_MEAN, IMAGENET_STD, MultiView, ViewSpec


def _scale(instance: object, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if len(value) != 2 or not 0 < value[0] <= value[1] <= 1:
        raise ValueError(f"'{attribute.name}' must be (min, max) with 0 < min <= max <= 1, got {value}")


def _jitter(instance: object, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if len(value) != 4 or min(value) < 0 or value[3] > 0.5:
        raise ValueError(f"'jitter' must be (brightness, contrast, saturation, hue) >= 0 with hue <= 0.5, got {value}")


def _rgb(instance: object, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if len(value) != 3 or (attribute.name == "std" and min(value) <= 0):
        raise ValueError(f"'{attribute.name}' must be 3 values (R, G, B), std > 0, got {value}")


@attrs.frozen(kw_only=True)
class CMCViewsConfig:
    """Options of the ``cmc`` views.

    Attributes:
        size: output side.
        num_views: crops per image: 1 for the memory-bank objective (L and ab of one crop, ``train_CMC.py``), 2 for
            the momentum encoder (queries from the first crop, keys from the second, PyContrast ``two_crop``).
        scale: area range of the random resized crop (``--crop_low``: 0.08 for ImageNet ResNets, default 0.2).
        jitter: colour jitter (brightness, contrast, saturation, hue), torchvision's convention; none officially,
            (0.4, 0.4, 0.4, 0.1) in PyContrast's CMC.
        jitter_prob: probability of the jitter (PyContrast aug 'C' applies it always).
        blur_prob: Gaussian blur probability, sigma ~ U(0.1, 2) (PyContrast's CMCv2 aug 'E': 0.5).
        interpolation: of the crop resize (torchvision's default in the official code: bilinear).
        mean, std: RGB normalisation of the tensors; the method undoes it before converting the colour space.
    """

    size: int = attrs.field(default=224, validator=v.gt(0))
    num_views: int = attrs.field(default=1, validator=[v.ge(1), v.le(2)])
    scale: tuple[float, ...] = attrs.field(default=(0.08, 1.0), validator=_scale)
    jitter: tuple[float, ...] = attrs.field(default=(0.0, 0.0, 0.0, 0.0), validator=_jitter)
    jitter_prob: float = attrs.field(default=1.0, validator=[v.ge(0), v.le(1)])
    blur_prob: float = attrs.field(default=0.0, validator=[v.ge(0), v.le(1)])
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    mean: tuple[float, ...] = attrs.field(default=IMAGENET_MEAN, validator=_rgb)
    std: tuple[float, ...] = attrs.field(default=IMAGENET_STD, validator=_rgb)


def build_cmc_views(config: CMCViewsConfig) -> MultiView:
    """CMC: crop, flip, optional jitter and blur, never grayscale; RGB out (the network converts to Lab)."""
    spec = ViewSpec(
        size=config.size,
        scale=config.scale,
        interpolation=config.interpolation,
        jitter=(config.jitter[0], config.jitter[1], config.jitter[2], config.jitter[3]),
        jitter_prob=config.jitter_prob,
        grayscale_prob=0.0,
        blur_prob=config.blur_prob,
        solarize_prob=0.0,
        mean=config.mean,
        std=config.std,
    )
    return MultiView([spec.build()] * config.num_views)
