"""The options of the plugin's components; the components are built by the modules that register them by name in
:mod:`sslcore_plugin_cmc.plugin`, imported only when a run builds one (so `sslcore list` needs no torch)."""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from sslcore.data.view_configs import IMAGENET_MEAN, IMAGENET_STD

ColorSpaceName = Literal["lab", "ycbcr", "ydbdr"]


@attrs.frozen(kw_only=True)
class CMCConfig:
    """CMC: L and ab encoders, each view's anchor against the other view's memory bank (or momentum queue).

    The ``cmc`` method (recipe tables: ``[backbones.l]``, ``[backbones.ab]``, ``[heads.l]``, ``[heads.ab]``,
    ``[key_stores.l]``, ``[key_stores.ab]``, ``[loss]``, and ``[target_updater]`` when ``keys_from = "target"``).

    Attributes:
        color_space: the split of each RGB view: ``lab`` (L | ab, the paper), ``ycbcr`` (Y | CbCr, ``--view YCbCr``,
            the paper's ablation) or ``ydbdr`` (Y | DbDr, PyContrast's CMC). The ``l`` tables take the first channel,
            the ``ab`` tables the other two. The views' RGB normalisation (``[views]`` mean, std) is undone first.
        keys_from: ``online``: the step's own embeddings are the keys, for memory banks (one view, ``train_CMC.py``);
            ``target``: a momentum encoder's embeddings of a second crop (two views, PyContrast's CMC with queues).
        shuffle_bn: run the momentum encoder on a shuffled global batch (PyContrast ``_shuffle_bn``; MoCo sec. 3.3).
        bn_group_size: samples per BatchNorm group for both encoders (None: each process's batch).
    """

    color_space: ColorSpaceName = "lab"
    keys_from: Literal["online", "target"] = "online"
    shuffle_bn: bool = False
    bn_group_size: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))

    def __attrs_post_init__(self) -> None:
        if self.shuffle_bn and self.keys_from != "target":
            raise ValueError("shuffle_bn shuffles the momentum encoder's batch: it needs keys_from = 'target'")


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
    """CMC: crop, flip, optional jitter and blur, never grayscale; RGB out (the network converts to Lab).

    Options of the ``cmc`` views.

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
        pipeline: ``"pil"`` (per image, the reference) or ``"batched"`` (per batch, docs/views.md).
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
    pipeline: Literal["pil", "batched"] = "pil"
