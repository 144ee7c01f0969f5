"""The ``advprop`` method's and ``crop_flip`` views' options; the method and the views are built by
:mod:`sslcore_plugin_advprop.method` and :mod:`sslcore_plugin_advprop.views`, imported only when a run builds them
(so `sslcore list` needs no torch)."""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from sslcore.data.view_configs import IMAGENET_MEAN, IMAGENET_STD, Interpolation


@attrs.frozen(kw_only=True)
class SupervisedConfig:
    """A backbone from ``[backbone]`` and a linear classifier over ``num_classes``.

    The ``advprop`` method, supervised classification (recipe table: ``[backbone]``).

    Fields:
        num_classes: classes of the labelled dataset.
        label_smoothing: cross-entropy label smoothing (0: none).
    """

    num_classes: int = attrs.field(validator=attrs.validators.ge(2))
    label_smoothing: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0), attrs.validators.lt(1)])


@attrs.frozen(kw_only=True)
class CropFlipViewsConfig:
    """Random resized crop and flip, no colour jitter, grayscale or blur.

    ``size``: output side; ``scale``: area range of the crop (Inception crop: 0.08-1); ``num_views``;
    ``interpolation``; ``mean`` / ``std``: normalisation; ``pipeline``: ``"pil"`` (per image, the reference) or
    ``"batched"`` (per batch, docs/views.md)."""

    size: int = attrs.field(default=224, validator=v.gt(0))
    scale: tuple[float, float] = attrs.field(default=(0.08, 1.0), validator=lambda _i, _a, s: _check_scale(s))
    num_views: int = attrs.field(default=1, validator=v.ge(1))
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    pipeline: Literal["pil", "batched"] = "pil"


def _check_scale(scale: tuple[float, float]) -> None:
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"'scale' must be two fractions 0 < low <= high <= 1, got {list(scale)}")
