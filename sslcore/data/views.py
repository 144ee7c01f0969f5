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

from sslcore.data.augment import CenterView, MultiView, ViewSpec, is_small
from sslcore.data.batched import BatchedViews, make_views
from sslcore.data.view_configs import (
    BYOLViewsConfig,
    EvalViewsConfig,
    MoCoV1ViewsConfig,
    MoCoV2ViewsConfig,
    MultiCropViewsConfig,
    SimCLRViewsConfig,
)


def build_simclr(config: SimCLRViewsConfig) -> MultiView | BatchedViews:
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
    return make_views([spec] * config.num_views, config.pipeline)


def build_mocov2(config: MoCoV2ViewsConfig) -> MultiView | BatchedViews:
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
    return make_views([spec] * config.num_views, config.pipeline)


def build_mocov1(config: MoCoV1ViewsConfig) -> MultiView | BatchedViews:
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
    return make_views([spec] * config.num_views, config.pipeline)


def build_byol(config: BYOLViewsConfig) -> MultiView | BatchedViews:
    """BYOL / MoCo v3: an asymmetric pair, blur 1.0 / 0.1 and solarization 0 / 0.2."""
    blur = config.blur_probs if config.blur_probs is not None else ((0.0, 0.0) if is_small(config.size) else (1.0, 0.1))
    return make_views(
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
            )
            for view in range(2)
        ],
        config.pipeline,
    )


_MULTICROP_STYLE = {
    # style: (global scale, local crops, local scale, interpolation, jitter)
    "swav": ((0.14, 1.0), 6, (0.05, 0.14), "bilinear", (0.8, 0.8, 0.8, 0.2)),
    "dino": ((0.4, 1.0), 8, (0.05, 0.4), "bicubic", (0.4, 0.4, 0.2, 0.1)),
}


def build_multicrop(config: MultiCropViewsConfig) -> MultiView | BatchedViews:
    """SwAV / DINO multi-crop: global crops then local crops, per-crop augmentation by style."""
    global_scale, local_crops, local_scale, interpolation, jitter = _MULTICROP_STYLE[config.style]
    small = is_small(config.global_size)

    def view(size: int, scale: tuple[float, ...], blur: float, solarize: float) -> ViewSpec:
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
        )

    g_size, g_scale = config.global_size, config.global_scale or global_scale
    if config.style == "dino":
        global_views = [view(g_size, g_scale, 1.0, 0.0), view(g_size, g_scale, 0.1, 0.2)]
    else:
        global_views = [view(g_size, g_scale, 0.5, 0.0)] * config.global_crops
    local_size = config.local_size or (g_size // 2 if small else 96)
    local_view = view(local_size, config.local_scale or local_scale, 0.5, 0.0)
    n_local = config.local_crops if config.local_crops is not None else local_crops
    return make_views(global_views + [local_view] * n_local, config.pipeline)


def build_eval(config: EvalViewsConfig) -> MultiView:
    """Evaluation: the image as it is, or resized and center cropped (256 -> 224), normalized; one view."""
    if config.size is None:
        return MultiView([CenterView(None, None, config.interpolation, config.mean, config.std)])
    fraction = config.crop_fraction if config.crop_fraction is not None else (1.0 if is_small(config.size) else 0.875)
    resize = round(config.size / fraction)
    return MultiView([CenterView(config.size, resize, config.interpolation, config.mean, config.std)])


