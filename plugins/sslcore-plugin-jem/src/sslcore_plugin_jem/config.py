"""The options of the plugin's components: the ``jem`` and ``hdge`` methods, the ``wrn`` backbone, the ``padcrop``
views and the ``hybrid`` evaluator. The components are built by :mod:`sslcore_plugin_jem.method`, ``.wrn``,
``.views`` and ``.evaluate``, imported only when a run builds them (so `sslcore list` needs no torch)."""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from sslcore.components.sgld_config import SgldConfig
from sslcore.data.view_configs import EvalViewsConfig


def _weight(**kwargs):
    return attrs.field(validator=v.ge(0), **kwargs)


@attrs.frozen(kw_only=True)
class JemConfig:
    """JEM: a classifier trained as an energy-based model, CE + E(x_data) - E(x_SGLD) (Grathwohl et al. 2020).

    ``num_classes``; ``ce_weight`` (``--p_y_given_x_weight``) and ``p_x_weight`` (``--p_x_weight``; 0: a plain
    classifier); ``sgld``: the sampler (``--n_steps 20 --sgld_lr 1 --sgld_std 0.01``); ``grid``: how many buffer
    images ``samples.png`` shows. Tables: ``[backbone]``, ``[sample_buffer]``."""

    num_classes: int = attrs.field(default=10, validator=v.gt(1))
    ce_weight: float = _weight(default=1.0)
    p_x_weight: float = _weight(default=1.0)
    sgld: SgldConfig = attrs.field(factory=SgldConfig)
    grid: int = attrs.field(default=64, validator=v.gt(0))


@attrs.frozen(kw_only=True)
class HdgeConfig:
    """HDGE: CE + a contrastive estimate of log p(x | y) against a queue of past logits (Liu and Abbeel 2020).

    ``num_classes``; ``ce_weight`` (``--pyxce``), ``contrast_weight`` (``--pxycontrast``), ``temperature``
    (``--contrast_t``) and ``p_x_weight`` (``--pxsgld``: JEM's SGLD term, off by default); ``sgld``, ``grid``: as
    for ``jem``. Tables: ``[backbone]``, ``[key_store]`` (a queue, K = ``--contrast_k``) and, when ``p_x_weight``
    > 0, ``[sample_buffer]``."""

    num_classes: int = attrs.field(default=10, validator=v.gt(1))
    ce_weight: float = _weight(default=1.0)
    contrast_weight: float = _weight(default=1.0)
    temperature: float = attrs.field(default=0.1, validator=v.gt(0))
    p_x_weight: float = _weight(default=0.0)
    sgld: SgldConfig = attrs.field(factory=SgldConfig)
    grid: int = attrs.field(default=64, validator=v.gt(0))


Norm = Literal["none", "batch", "instance", "layer"]


def _depth(_instance, _attribute, depth: int) -> None:
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"a Wide ResNet's depth is 6n + 4 with n >= 1, got {depth}")


@attrs.frozen(kw_only=True)
class WideResNetConfig:
    """JEM's Wide ResNet (WRN-28-10, leaky ReLU, no normalisation by default) for 32 px images.

    ``depth`` (6n + 4: 28) and ``width`` (k: 10) of WRN-d-k; ``norm``: ``none`` (JEM's default), ``batch``
    (BatchNorm with momentum 0.9, as the official ``get_norm``), ``instance`` or ``layer``; ``dropout`` between the
    convolutions of a block; ``leak``: the negative slope of the leaky ReLUs."""

    depth: int = attrs.field(default=28, validator=_depth)
    width: int = attrs.field(default=10, validator=v.gt(0))
    norm: Norm = attrs.field(default="none", validator=v.in_(("none", "batch", "instance", "layer")))
    dropout: float = attrs.field(default=0.0, validator=[v.ge(0), v.lt(1)])
    leak: float = attrs.field(default=0.2, validator=v.ge(0))


HALF: tuple[float, ...] = (0.5, 0.5, 0.5)


@attrs.frozen(kw_only=True)
class PadCropViewsConfig:
    """Reflect-pad, random crop, flip, normalise to [-1, 1], add Gaussian noise (JEM's CIFAR training view).

    ``size``: crop side; ``padding``: reflect padding before the crop; ``flip``: random horizontal flip (off for
    SVHN in the official code); ``noise``: std of the Gaussian added to the normalised image; ``mean`` / ``std``:
    normalisation (the evaluator's ``transform`` must use the same); ``num_views``: views per image; ``pipeline``:
    ``"pil"`` (per image, the reference) or ``"batched"`` (per batch, docs/views.md)."""

    size: int = attrs.field(default=32, validator=v.gt(0))
    padding: int = attrs.field(default=4, validator=v.ge(0))
    flip: bool = True
    noise: float = attrs.field(default=0.03, validator=v.ge(0))
    mean: tuple[float, ...] = HALF
    std: tuple[float, ...] = HALF
    num_views: int = attrs.field(default=1, validator=v.gt(0))
    pipeline: Literal["pil", "batched"] = "pil"


OodSet = Literal["interp", "uniform", "constant"]


OOD_SETS: tuple[str, ...] = ("interp", "uniform", "constant")


@attrs.frozen(kw_only=True)
class HybridEvalConfig:
    """Accuracy, expected calibration error and OOD AUROC (interpolated, noise and constant images) of a classifier.

    ``limit_train`` / ``limit_eval``: the first n images of the train split (for ``train_accuracy``) and of the
    test split; ``bins``: of the ECE; ``ood``: the out-of-distribution sets; ``noise``: std of the Gaussian added
    to every evaluated image (JEM's ``--sigma``); ``seed``: of the sets and that noise; ``batch_size`` /
    ``num_workers``: of the loaders; ``transform``: the evaluation view (mean = std = 0.5 for JEM)."""

    limit_train: int | None = attrs.field(default=5000, validator=v.optional(v.gt(0)))
    limit_eval: int | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    bins: int = attrs.field(default=15, validator=v.gt(0))
    ood: tuple[OodSet, ...] = attrs.field(default=OOD_SETS, validator=v.deep_iterable(v.in_(OOD_SETS)))
    noise: float = attrs.field(default=0.0, validator=v.ge(0))
    seed: int = 0
    batch_size: int = attrs.field(default=256, validator=v.gt(0))
    num_workers: int = attrs.field(default=2, validator=v.ge(0))
    transform: EvalViewsConfig = attrs.field(factory=EvalViewsConfig)
