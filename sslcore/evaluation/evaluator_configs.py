"""The built-in evaluators' options (``knn``, ``linear``); the evaluators are built by :mod:`sslcore.evaluation.knn`
and :mod:`sslcore.evaluation.linear_probe`, imported only when a run builds one (so `sslcore list` needs no torch)."""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import validators as v

from sslcore.data.view_configs import EvalViewsConfig


@attrs.frozen(kw_only=True)
class KnnConfig:
    """Weighted kNN monitor (InstDisc protocol) on the backbone's features of the evaluation view.

    ``k``: neighbours (200 as InstDisc / DINO; DINO also reports 20); ``temperature``: T of the vote weights
    exp(s / T); ``batch_size`` / ``num_workers``: of the feature-extraction loaders; ``limit_train`` /
    ``limit_eval``: use only the first n images of the train (memory) / eval (query) split; ``transform``:
    the evaluation view (must match the training views' resolution and normalization); ``features``:
    ``"backbone"`` (what a run exports) or ``"head"``, the normalised output of the method's projection head, as
    the official monitors of InstDisc, MoCo and InvaSpread (:mod:`sslcore.evaluation.monitor`; the engine's
    monitor only: ``sslcore eval knn`` scores the exported backbone); ``raw_pixels``: also report
    ``raw_pixels_knn_top1``, the same kNN on the flattened pixels of the evaluation view, the floor any
    representation must clear (computed once per evaluator: the images do not change).
    """

    k: int = attrs.field(default=200, validator=v.gt(0))
    temperature: float = attrs.field(default=0.07, validator=v.gt(0))
    batch_size: int = attrs.field(default=256, validator=v.gt(0))
    num_workers: int = attrs.field(default=2, validator=v.ge(0))
    limit_train: int | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    limit_eval: int | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    transform: EvalViewsConfig = attrs.field(factory=EvalViewsConfig)
    features: Literal["backbone", "head"] = "backbone"
    raw_pixels: bool = False


@attrs.frozen(kw_only=True)
class LinearProbeConfig:
    """Offline linear probe on frozen features of the evaluation view (standardized with train statistics).

    ``epochs``, ``lr`` (peak, cosine-decayed to 0), ``momentum``, ``weight_decay`` and ``probe_batch_size``:
    the SGD run of the probe; ``seed``: its batch order; ``batch_size`` / ``num_workers``: of the
    feature-extraction loaders; ``limit_train`` / ``limit_eval``: use only the first n images of each split;
    ``transform``: the evaluation view (must match the training views' resolution and normalization).
    """

    epochs: int = attrs.field(default=100, validator=v.gt(0))
    lr: float = attrs.field(default=0.1, validator=v.gt(0))
    momentum: float = attrs.field(default=0.9, validator=[v.ge(0), v.lt(1)])
    weight_decay: float = attrs.field(default=0.0, validator=v.ge(0))
    probe_batch_size: int = attrs.field(default=256, validator=v.gt(0))
    seed: int = 0
    batch_size: int = attrs.field(default=256, validator=v.gt(0))
    num_workers: int = attrs.field(default=2, validator=v.ge(0))
    limit_train: int | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    limit_eval: int | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    transform: EvalViewsConfig = attrs.field(factory=EvalViewsConfig)
