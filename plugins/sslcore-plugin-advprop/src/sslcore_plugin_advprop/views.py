"""Crop-and-flip views: the standard supervised augmentation (random resized crop, horizontal flip, normalise;
no colour distortion), one view per image unless asked for more."""

from __future__ import annotations

import attrs
from attrs import validators as v

from sslcore.data.augment import IMAGENET_MEAN, IMAGENET_STD, MultiView, ViewSpec
from sslcore.data.views import Interpolation


@attrs.frozen(kw_only=True)
class CropFlipViewsConfig:
    """``size``: output side; ``scale``: area range of the crop (Inception crop: 0.08-1); ``num_views``;
    ``interpolation``; ``mean`` / ``std``: normalisation."""

    size: int = attrs.field(default=224, validator=v.gt(0))
    scale: tuple[float, float] = attrs.field(default=(0.08, 1.0), validator=lambda _i, _a, s: _check_scale(s))
    num_views: int = attrs.field(default=1, validator=v.ge(1))
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


def _check_scale(scale: tuple[float, float]) -> None:
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"'scale' must be two fractions 0 < low <= high <= 1, got {list(scale)}")


def build_crop_flip(config: CropFlipViewsConfig) -> MultiView:
    """Random resized crop and flip, no colour jitter, grayscale or blur."""
    spec = ViewSpec(
        size=config.size,
        scale=config.scale,
        interpolation=config.interpolation,
        jitter=(0.0, 0.0, 0.0, 0.0),
        jitter_prob=0.0,
        grayscale_prob=0.0,
        blur_prob=0.0,
        solarize_prob=0.0,
        mean=config.mean,
        std=config.std,
    )
    return MultiView([spec.build()] * config.num_views)
