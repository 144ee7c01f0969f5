"""Built-in view transforms: ``simclr``, ``mocov1``, ``mocov2``, ``byol``, ``multicrop`` and ``eval``.

Each is ``factory(config) -> callable(PIL.Image) -> list[Tensor]``, one normalized tensor per view. The
defaults are the papers' ImageNet settings at ``size = 224``. For small images (``size`` <= 64: CIFAR,
Tiny-ImageNet) the fields left unset switch to the small-image recipe: no Gaussian blur, as
SimCLR on CIFAR-10 (appendix B.9: "leaving out Gaussian blur"; blurring a 32 px image with sigma up to 2 px
erases most of it), and SimCLR's colour strength 0.5 there. Normalization defaults to the ImageNet statistics
of every official PyTorch code base; CIFAR recipes may set CIFAR's (0.4914, 0.4822, 0.4465) / (0.247, 0.243,
0.261), as long as the evaluator's ``transform`` uses the same.
"""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v
from torchvision.transforms import Compose

from sslcore import hookimpl
from sslcore.data.augment import IMAGENET_MEAN, IMAGENET_STD, CenterView, MultiView, ViewSpec, is_small

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
    ``std``: normalization.
    """

    size: int = _size_field()
    num_views: int = attrs.field(default=2, validator=v.ge(1))
    scale: tuple[float, ...] = _scale_field((0.08, 1.0))
    strength: float | None = attrs.field(default=None, validator=v.optional([v.ge(0), v.le(2.5)]))
    blur_prob: float | None = attrs.field(default=None, validator=_probability)
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, ...] = _mean_field()
    std: tuple[float, ...] = _std_field()


@attrs.frozen(kw_only=True)
class MoCoV2ViewsConfig:
    """MoCo v2's "aug+" views (Chen et al. 2020, ``main_moco.py --aug-plus`` of facebookresearch/moco).

    Crop ``scale`` (0.2, 1); jitter (0.4, 0.4, 0.4, 0.1) with p 0.8; grayscale p 0.2; Gaussian blur with
    ``blur_prob`` (unset: 0.5, or 0 for small images), sigma ~ U(0.1, 2); flip. ``size``, ``num_views``,
    ``interpolation`` (torchvision's default, bilinear, in the official code), ``mean`` / ``std`` as in simclr.
    """

    size: int = _size_field()
    num_views: int = attrs.field(default=2, validator=v.ge(1))
    scale: tuple[float, ...] = _scale_field((0.2, 1.0))
    blur_prob: float | None = attrs.field(default=None, validator=_probability)
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, ...] = _mean_field()
    std: tuple[float, ...] = _std_field()


@attrs.frozen(kw_only=True)
class MoCoV1ViewsConfig:
    """MoCo v1's views, also InstDisc's (``main_moco.py`` of facebookresearch/moco, ``main.py`` of
    zhirongw/lemniscate.pytorch): crop ``scale`` (0.2, 1), grayscale p 0.2, then always jitter (0.4, 0.4, 0.4,
    0.4), flip. ``size``, ``num_views``, ``interpolation``, ``mean`` / ``std`` as in mocov2.
    """

    size: int = _size_field()
    num_views: int = attrs.field(default=2, validator=v.ge(1))
    scale: tuple[float, ...] = _scale_field((0.2, 1.0))
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, ...] = _mean_field()
    std: tuple[float, ...] = _std_field()


@attrs.frozen(kw_only=True)
class BYOLViewsConfig:
    """BYOL's asymmetric pair (Grill et al. 2020, table 6), also MoCo v3's (``main_moco.py`` of
    facebookresearch/moco-v3, which resizes bilinearly: set ``interpolation = "bilinear"``).

    Crop ``scale`` (0.08, 1); flip; jitter (0.4, 0.4, 0.2, 0.1) with p 0.8; grayscale p 0.2; Gaussian blur with
    ``blur_probs`` per view (unset: (1.0, 0.1), or (0, 0) for small images); solarization with
    ``solarize_probs`` per view. Always two views. ``size``, ``interpolation`` (BYOL's code resizes
    bicubically), ``mean`` / ``std`` as in simclr.
    """

    size: int = _size_field()
    scale: tuple[float, ...] = _scale_field((0.08, 1.0))
    blur_probs: tuple[float, ...] | None = attrs.field(default=None, validator=_probability_pair)
    solarize_probs: tuple[float, ...] = attrs.field(default=(0.0, 0.2), validator=_probability_pair)
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, ...] = _mean_field()
    std: tuple[float, ...] = _std_field()


@attrs.frozen(kw_only=True)
class MultiCropViewsConfig:
    """Multi-crop (SwAV, Caron et al. 2020 sec. 3.2; DINO, Caron et al. 2021): large global crops and small
    local crops. Views come globals first, then locals.

    ``style``: the per-crop augmentation: ``swav`` (``src/multicropdataset.py``: the SimCLR colour distortion
    of strength 1 and blur p 0.5 on every crop) or ``dino`` (``DataAugmentationDINO`` in ``main_dino.py``:
    jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2; global crop 1 blur p 1.0, global crop 2 blur p 0.1 and
    solarization p 0.2, local crops blur p 0.5). ``global_crops``: number of global crops (DINO: exactly 2);
    ``global_size``: their side; ``global_scale``: their area range (unset: SwAV (0.14, 1), DINO (0.4, 1));
    ``local_crops``: number of local crops (unset: SwAV 6, DINO 8; 0 for none); ``local_size``: their side
    (unset: 96, or half of ``global_size`` for small images); ``local_scale``: their area range (unset: SwAV
    (0.05, 0.14), DINO (0.05, 0.4)); ``interpolation`` (unset: SwAV bilinear, DINO bicubic); ``mean`` /
    ``std`` as in simclr (SwAV's code uses std 0.228 for red, a typo of 0.229). Blur is off for small images.
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


def build_simclr(config: SimCLRViewsConfig) -> MultiView:
    """SimCLR: crop 0.08-1, flip, colour distortion of strength s, blur; n identical-distribution views."""
    small = is_small(config.size)
    s = config.strength if config.strength is not None else (0.5 if small else 1.0)
    spec = ViewSpec(
        size=config.size,
        scale=config.scale,
        interpolation=config.interpolation,
        jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),
        jitter_prob=0.8,
        grayscale_prob=0.2,
        blur_prob=config.blur_prob if config.blur_prob is not None else (0.0 if small else 0.5),
        solarize_prob=0.0,
        mean=config.mean,
        std=config.std,
    )
    return MultiView([spec.build()] * config.num_views)


def build_mocov2(config: MoCoV2ViewsConfig) -> MultiView:
    """MoCo v2 "aug+": crop 0.2-1, jitter p 0.8, grayscale, blur p 0.5, flip."""
    small = is_small(config.size)
    spec = ViewSpec(
        size=config.size,
        scale=config.scale,
        interpolation=config.interpolation,
        jitter=(0.4, 0.4, 0.4, 0.1),
        jitter_prob=0.8,
        grayscale_prob=0.2,
        blur_prob=config.blur_prob if config.blur_prob is not None else (0.0 if small else 0.5),
        solarize_prob=0.0,
        mean=config.mean,
        std=config.std,
    )
    return MultiView([spec.build()] * config.num_views)


def build_mocov1(config: MoCoV1ViewsConfig) -> MultiView:
    """MoCo v1 / InstDisc: crop 0.2-1, grayscale p 0.2, jitter 0.4 always, flip."""
    spec = ViewSpec(
        size=config.size,
        scale=config.scale,
        interpolation=config.interpolation,
        jitter=(0.4, 0.4, 0.4, 0.4),
        jitter_prob=1.0,
        grayscale_prob=0.2,
        grayscale_first=True,
        blur_prob=0.0,
        solarize_prob=0.0,
        mean=config.mean,
        std=config.std,
    )
    return MultiView([spec.build()] * config.num_views)


def build_byol(config: BYOLViewsConfig) -> MultiView:
    """BYOL / MoCo v3: an asymmetric pair, blur 1.0 / 0.1 and solarization 0 / 0.2."""
    blur = config.blur_probs if config.blur_probs is not None else ((0.0, 0.0) if is_small(config.size) else (1.0, 0.1))
    return MultiView(
        [
            ViewSpec(
                size=config.size,
                scale=config.scale,
                interpolation=config.interpolation,
                jitter=(0.4, 0.4, 0.2, 0.1),
                jitter_prob=0.8,
                grayscale_prob=0.2,
                blur_prob=blur[view],
                solarize_prob=config.solarize_probs[view],
                mean=config.mean,
                std=config.std,
            ).build()
            for view in range(2)
        ]
    )


_MULTICROP_STYLE = {
    # style: (global scale, local crops, local scale, interpolation, jitter)
    "swav": ((0.14, 1.0), 6, (0.05, 0.14), "bilinear", (0.8, 0.8, 0.8, 0.2)),
    "dino": ((0.4, 1.0), 8, (0.05, 0.4), "bicubic", (0.4, 0.4, 0.2, 0.1)),
}


def build_multicrop(config: MultiCropViewsConfig) -> MultiView:
    """SwAV / DINO multi-crop: global crops then local crops, per-crop augmentation by style."""
    global_scale, local_crops, local_scale, interpolation, jitter = _MULTICROP_STYLE[config.style]
    small = is_small(config.global_size)

    def view(size: int, scale: tuple[float, ...], blur: float, solarize: float) -> Compose:
        return ViewSpec(
            size=size,
            scale=scale,
            interpolation=config.interpolation or interpolation,
            jitter=jitter,
            jitter_prob=0.8,
            grayscale_prob=0.2,
            blur_prob=0.0 if small else blur,
            solarize_prob=solarize,
            mean=config.mean,
            std=config.std,
        ).build()

    g_size, g_scale = config.global_size, config.global_scale or global_scale
    if config.style == "dino":
        global_views = [view(g_size, g_scale, 1.0, 0.0), view(g_size, g_scale, 0.1, 0.2)]
    else:
        global_views = [view(g_size, g_scale, 0.5, 0.0)] * config.global_crops
    local_size = config.local_size or (g_size // 2 if small else 96)
    local_view = view(local_size, config.local_scale or local_scale, 0.5, 0.0)
    n_local = config.local_crops if config.local_crops is not None else local_crops
    return MultiView(global_views + [local_view] * n_local)


def build_eval(config: EvalViewsConfig) -> MultiView:
    """Evaluation: the image as it is, or resized and center cropped (256 -> 224), normalized; one view."""
    if config.size is None:
        return MultiView([CenterView(None, None, config.interpolation, config.mean, config.std)])
    fraction = config.crop_fraction if config.crop_fraction is not None else (1.0 if is_small(config.size) else 0.875)
    resize = round(config.size / fraction)
    return MultiView([CenterView(config.size, resize, config.interpolation, config.mean, config.std)])


@hookimpl
def sslcore_register_transforms(registry):
    registry.add("simclr", build_simclr, SimCLRViewsConfig)
    registry.add("mocov2", build_mocov2, MoCoV2ViewsConfig)
    registry.add("mocov1", build_mocov1, MoCoV1ViewsConfig)
    registry.add("byol", build_byol, BYOLViewsConfig)
    registry.add("multicrop", build_multicrop, MultiCropViewsConfig)
    registry.add("eval", build_eval, EvalViewsConfig)
