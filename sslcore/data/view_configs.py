"""The built-in view transforms' options and their registration; the transforms are built by
:mod:`sslcore.data.views`, imported only when a run builds one (so `sslcore list` needs no torch or torchvision)."""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from sslcore import hookimpl

#: The ImageNet statistics every official PyTorch code base normalises with (the views' default).
IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)

Interpolation = Literal["bilinear", "bicubic"]


def _scale(instance, attribute, value: tuple[float, ...]) -> None:
    if len(value) != 2 or not 0 < value[0] <= value[1] <= 1:
        raise ValueError(f"'{attribute.name}' must be (min, max) with 0 < min <= max <= 1, got {value}")


def _rgb(instance, attribute, value: tuple[float, ...]) -> None:
    if len(value) != 3:
        raise ValueError(f"'{attribute.name}' must have 3 values (R, G, B), got {value}")
    if attribute.name == "std" and min(value) <= 0:
        raise ValueError(f"'std' must be positive, got {value}")


def _probability(instance, attribute, value: float | None) -> None:
    if value is not None and not 0 <= value <= 1:
        raise ValueError(f"'{attribute.name}' must be in [0, 1], got {value}")


def _probability_pair(instance, attribute, value: tuple[float, ...] | None) -> None:
    if value is not None and (len(value) != 2 or not all(0 <= p <= 1 for p in value)):
        raise ValueError(f"'{attribute.name}' must be two probabilities (view 1, view 2), got {value}")


def _size_field(default: int | None = 224):
    return attrs.field(default=default, validator=v.gt(0) if default is not None else v.optional(v.gt(0)))


def _scale_field(default: tuple[float, float] | None):
    return attrs.field(default=default, validator=v.optional(_scale))


def _mean_field():
    return attrs.field(default=IMAGENET_MEAN, validator=_rgb)


def _std_field():
    return attrs.field(default=IMAGENET_STD, validator=_rgb)


@attrs.frozen(kw_only=True)
class SimCLRViewsConfig:
    """SimCLR's views (Chen et al. 2020, appendix A; ``data_util.py`` of google-research/simclr).

    ``size``: output side; ``num_views``: views per image, all drawn from the same distribution; ``scale``:
    area range of the random resized crop; ``strength``: colour distortion strength s, jitter (0.8s, 0.8s,
    0.8s, 0.2s) applied with p 0.8, then grayscale with p 0.2 (unset: 1.0, or 0.5 for small images as the
    paper's CIFAR-10 setting; at most 2.5, where the hue jitter reaches its limit 0.5); ``blur_prob``: Gaussian blur probability, sigma ~ U(0.1, 2) (unset: 0.5, or 0
    for small images); ``interpolation``: of the crop resize (the TF code resizes bicubically); ``mean`` /
    ``std``: normalization; ``pipeline``: ``"pil"`` (per image, the reference) or ``"batched"`` (per batch,
    docs/views.md), with the same random parameters for the same seed.
    """

    size: int = _size_field()
    num_views: int = attrs.field(default=2, validator=v.ge(1))
    scale: tuple[float, ...] = _scale_field((0.08, 1.0))
    strength: float | None = attrs.field(default=None, validator=v.optional([v.ge(0), v.le(2.5)]))
    blur_prob: float | None = attrs.field(default=None, validator=_probability)
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, ...] = _mean_field()
    std: tuple[float, ...] = _std_field()
    pipeline: Literal["pil", "batched"] = "pil"


@attrs.frozen(kw_only=True)
class MoCoV2ViewsConfig:
    """MoCo v2's "aug+" views (Chen et al. 2020, ``main_moco.py --aug-plus`` of facebookresearch/moco).

    Crop ``scale`` (0.2, 1); jitter (0.4, 0.4, 0.4, 0.1) with p 0.8; grayscale p 0.2; Gaussian blur with
    ``blur_prob`` (unset: 0.5, or 0 for small images), sigma ~ U(0.1, 2); flip. ``size``, ``num_views``,
    ``interpolation`` (torchvision's default, bilinear, in the official code), ``mean`` / ``std``, ``pipeline`` as
    in simclr.
    """

    size: int = _size_field()
    num_views: int = attrs.field(default=2, validator=v.ge(1))
    scale: tuple[float, ...] = _scale_field((0.2, 1.0))
    blur_prob: float | None = attrs.field(default=None, validator=_probability)
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, ...] = _mean_field()
    std: tuple[float, ...] = _std_field()
    pipeline: Literal["pil", "batched"] = "pil"


@attrs.frozen(kw_only=True)
class MoCoV1ViewsConfig:
    """MoCo v1 / InstDisc: crop 0.2-1, grayscale p 0.2, jitter 0.4 always, flip.

    MoCo v1's views, also InstDisc's (``main_moco.py`` of facebookresearch/moco, ``main.py`` of
    zhirongw/lemniscate.pytorch): crop ``scale`` (0.2, 1), grayscale p 0.2, then always jitter (0.4, 0.4, 0.4,
    0.4), flip. ``size``, ``num_views``, ``interpolation``, ``mean`` / ``std``, ``pipeline`` as in mocov2.
    """

    size: int = _size_field()
    num_views: int = attrs.field(default=2, validator=v.ge(1))
    scale: tuple[float, ...] = _scale_field((0.2, 1.0))
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, ...] = _mean_field()
    std: tuple[float, ...] = _std_field()
    pipeline: Literal["pil", "batched"] = "pil"


@attrs.frozen(kw_only=True)
class BYOLViewsConfig:
    """BYOL / MoCo v3: an asymmetric pair, blur 1.0 / 0.1 and solarization 0 / 0.2.

    BYOL's asymmetric pair (Grill et al. 2020, table 6), also MoCo v3's (``main_moco.py`` of
    facebookresearch/moco-v3, which resizes bilinearly: set ``interpolation = "bilinear"``).

    Crop ``scale`` (0.08, 1); flip; jitter (0.4, 0.4, 0.2, 0.1) with p 0.8; grayscale p 0.2; Gaussian blur with
    ``blur_probs`` per view (unset: (1.0, 0.1), or (0, 0) for small images); solarization with
    ``solarize_probs`` per view. Always two views. ``size``, ``interpolation`` (BYOL's code resizes
    bicubically), ``mean`` / ``std``, ``pipeline`` as in simclr.
    """

    size: int = _size_field()
    scale: tuple[float, ...] = _scale_field((0.08, 1.0))
    blur_probs: tuple[float, ...] | None = attrs.field(default=None, validator=_probability_pair)
    solarize_probs: tuple[float, ...] = attrs.field(default=(0.0, 0.2), validator=_probability_pair)
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, ...] = _mean_field()
    std: tuple[float, ...] = _std_field()
    pipeline: Literal["pil", "batched"] = "pil"


@attrs.frozen(kw_only=True)
class MultiCropViewsConfig:
    """SwAV / DINO multi-crop: global crops then local crops, per-crop augmentation by style.

    Multi-crop (SwAV, Caron et al. 2020 sec. 3.2; DINO, Caron et al. 2021): large global crops and small
    local crops. Views come globals first, then locals.

    ``style``: the per-crop augmentation: ``swav`` (``src/multicropdataset.py``: the SimCLR colour distortion
    of strength 1 and blur p 0.5 on every crop) or ``dino`` (``DataAugmentationDINO`` in ``main_dino.py``:
    jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2; global crop 1 blur p 1.0, global crop 2 blur p 0.1 and
    solarization p 0.2, local crops blur p 0.5). ``global_crops``: number of global crops (DINO: exactly 2);
    ``global_size``: their side; ``global_scale``: their area range (unset: SwAV (0.14, 1), DINO (0.4, 1));
    ``local_crops``: number of local crops (unset: SwAV 6, DINO 8; 0 for none); ``local_size``: their side
    (unset: 96, or half of ``global_size`` for small images); ``local_scale``: their area range (unset: SwAV
    (0.05, 0.14), DINO (0.05, 0.4)); ``interpolation`` (unset: SwAV bilinear, DINO bicubic); ``mean`` /
    ``std`` as in simclr (SwAV's code uses std 0.228 for red, a typo of 0.229); ``pipeline`` as in simclr. Blur is
    off for small images.
    """

    style: Literal["swav", "dino"] = "swav"
    global_crops: int = attrs.field(default=2, validator=v.ge(1))
    global_size: int = _size_field()
    global_scale: tuple[float, ...] | None = _scale_field(None)
    local_crops: int | None = attrs.field(default=None, validator=v.optional(v.ge(0)))
    local_size: int | None = _size_field(None)
    local_scale: tuple[float, ...] | None = _scale_field(None)
    interpolation: Interpolation | None = None
    mean: tuple[float, ...] = _mean_field()
    std: tuple[float, ...] = _std_field()
    pipeline: Literal["pil", "batched"] = "pil"

    def __attrs_post_init__(self) -> None:
        if self.style == "dino" and self.global_crops != 2:
            raise ValueError(
                f"style 'dino' has exactly 2 (asymmetric) global crops, got global_crops = {self.global_crops}"
            )


@attrs.frozen(kw_only=True)
class EvalViewsConfig:
    """One deterministic view for evaluation.

    ``size`` unset: the images as they are (native resolution, for datasets whose images share one size, such
    as CIFAR or digits: SimCLR's code evaluates CIFAR uncropped). ``size`` set: resize the short side to
    ``size / crop_fraction`` and center crop ``size`` (the ImageNet protocol: ``size = 224``, resize 256);
    ``crop_fraction`` unset: 0.875 (224 / 256), or 1.0 for small sizes. ``interpolation``, ``mean`` /
    ``std``: as in the training views, which they must match.
    """

    size: int | None = _size_field(None)
    crop_fraction: float | None = attrs.field(default=None, validator=v.optional([v.gt(0), v.le(1)]))
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, ...] = _mean_field()
    std: tuple[float, ...] = _std_field()


@hookimpl
def sslcore_register_transforms(registry):
    registry.add("simclr", "sslcore.data.views:build_simclr", SimCLRViewsConfig)
    registry.add("mocov2", "sslcore.data.views:build_mocov2", MoCoV2ViewsConfig)
    registry.add("mocov1", "sslcore.data.views:build_mocov1", MoCoV1ViewsConfig)
    registry.add("byol", "sslcore.data.views:build_byol", BYOLViewsConfig)
    registry.add("multicrop", "sslcore.data.views:build_multicrop", MultiCropViewsConfig)
    registry.add("eval", "sslcore.data.views:build_eval", EvalViewsConfig)
