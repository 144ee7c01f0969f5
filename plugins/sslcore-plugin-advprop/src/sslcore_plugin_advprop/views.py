"""Crop-and-flip views: the standard supervised augmentation (random resized crop, horizontal flip, normalise;
no colour distortion), one view per image unless asked for more."""

from __future__ import annotations

from sslcore.data.augment import MultiView, ViewSpec
from sslcore.data.batched import BatchedViews, make_views
from sslcore_plugin_advprop.config import CropFlipViewsConfig


def build_crop_flip(config: CropFlipViewsConfig) -> MultiView | BatchedViews:
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
    return make_views([spec] * config.num_views, config.pipeline)
