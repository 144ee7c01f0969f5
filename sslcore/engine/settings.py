"""Engine-owned recipe tables: ``[run]``, ``[optimizer]`` and ``[schedule]``."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs import validators as v

from sslcore.engine.trackers import check_trackers


def _directory_name(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
    """One path component: the run directory is ``output_dir/name``, never ``output_dir`` itself or elsewhere."""
    if not value.strip() or value in (".", "..") or "/" in value or "\\" in value:
        raise ValueError(f"'{attribute.name}' must be one directory name (not empty, '.', '..' or a path), "
                         f"got {value!r}")


#: Evaluations during training when ``run.eval_every`` is unset: with those before and after, a kNN curve of 6 points.
AUTO_EVALUATIONS = 4


@attrs.frozen(kw_only=True)
class RunSettings:
    """``[run]``: how long, how big, where to write, how to checkpoint.

    ``batch_size`` is the GLOBAL batch, as papers state it; each of N processes gets batch_size / N.
    ``epochs`` sets the length in passes over the training set; ``steps`` caps it in optimizer steps
    (give either or both). ``name`` is one directory name: the run directory is ``output_dir/name``.
    ``resume`` is ``auto`` (latest checkpoint in the run directory, if any), ``never`` (start over), or a
    checkpoint path. ``eval_every`` (steps) unset evaluates :data:`AUTO_EVALUATIONS` times during training (besides
    before and after), 0 only before and after. ``mixed_precision`` is Accelerate's autocast of the forward
    (``bf16`` also on the CPU; ``fp16`` adds a loss scaler, whose overflow check reads the device every step).
    ``channels_last`` and ``compile`` change how the step computes, not what (:mod:`sslcore.engine.compute`).
    """

    name: str = attrs.field(default="run", validator=_directory_name)
    output_dir: str = "runs"
    seed: int = 0
    deterministic: bool = False
    epochs: int | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    steps: int | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    batch_size: int = attrs.field(validator=v.gt(0))
    num_workers: int = attrs.field(default=2, validator=v.ge(0))
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    channels_last: bool = False
    compile: bool = False
    log_every: int = attrs.field(default=10, validator=v.gt(0))
    checkpoint_every: int = attrs.field(default=0, validator=v.ge(0))
    keep_checkpoints: int = attrs.field(default=2, validator=v.gt(0))
    eval_every: int | None = attrs.field(default=None, validator=v.optional(v.ge(0)))
    resume: str = "auto"
    grad_clip: float | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    sync_batchnorm: bool = True
    trackers: tuple[str, ...] = attrs.field(default=(), validator=check_trackers)
    progress: bool = True

    def __attrs_post_init__(self) -> None:
        if self.epochs is None and self.steps is None:
            raise ValueError("give epochs or steps (or both: steps caps the run)")

    def evaluation_interval(self, total_steps: int) -> int:
        """Steps between evaluations during training (0: none): ``eval_every``, or unset, the interval that gives
        :data:`AUTO_EVALUATIONS` evaluations before the last step."""
        if self.eval_every is not None:
            return self.eval_every
        return -(-total_steps // (AUTO_EVALUATIONS + 1))


@attrs.frozen(kw_only=True)
class OptimizerSettings:
    """``[optimizer]``: the optimizer and its learning-rate rule.

    The learning rate is ``base_lr * batch_size / reference_batch`` (``lr_scaling = "linear"``, Goyal et al.),
    ``base_lr * sqrt(batch_size / reference_batch)`` (``"sqrt"``) or ``base_lr`` (``"none"``).
    Biases and normalisation parameters (1-D tensors) are excluded from weight decay and from LARS
    adaptation when ``exclude_bias_and_norm`` is set. Parameters whose name starts with one of
    ``fixed_lr_prefixes`` keep the initial learning rate (SimSiam's predictor, sec. 4.2 and Table 1).
    ``trust_ratio`` (LARS only): ``"sum_of_norms"``, ``eta ||w|| / (||g|| + lambda ||w||)`` (timm's ``Lars``, the
    LARS paper, apex LARC as SwAV uses it), or ``"update_norm"``, ``eta ||w|| / ||g + lambda w||`` (the official
    SimCLR, BYOL and MoCo v3 optimizers; :mod:`sslcore.engine.lars`).
    """

    kind: Literal["sgd", "adamw", "lars"]
    base_lr: float = attrs.field(validator=v.gt(0))
    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"
    reference_batch: int = attrs.field(default=256, validator=v.gt(0))
    weight_decay: float = attrs.field(default=0.0, validator=v.ge(0))
    momentum: float = attrs.field(default=0.9, validator=[v.ge(0), v.lt(1)])
    nesterov: bool = False
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = attrs.field(default=1e-8, validator=v.gt(0))
    trust_coefficient: float = attrs.field(default=0.001, validator=v.gt(0))
    trust_ratio: Literal["sum_of_norms", "update_norm"] = "sum_of_norms"
    exclude_bias_and_norm: bool = True
    fixed_lr_prefixes: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        if len(self.betas) != 2:
            raise ValueError(f"betas must have 2 values, got {len(self.betas)}")
        if self.trust_ratio != "sum_of_norms" and self.kind != "lars":
            raise ValueError(f"trust_ratio is a LARS option; kind = '{self.kind}' has none")

    def lr(self, batch_size: int) -> float:
        ratio = batch_size / self.reference_batch
        return {"linear": self.base_lr * ratio, "sqrt": self.base_lr * ratio**0.5, "none": self.base_lr}[
            self.lr_scaling
        ]


@attrs.frozen(kw_only=True)
class ScheduleSettings:
    """``[schedule]``: per-step learning-rate (and optionally weight-decay) schedule.

    Linear warm-up from ``warmup_start_ratio * lr`` over ``warmup_epochs``, then cosine decay to
    ``final_lr_ratio * lr`` (``kind = "cosine"``), constant, or piecewise constant (``kind = "step"``): from epoch
    ``milestones[i]`` on, the lr is ``factors[i] * lr`` (MoCo v1, InstDisc: milestones [120, 160], factors [0.1, 0.01]). ``weight_decay_end`` (DINO) moves the weight
    decay from the optimizer's value to this one along a cosine.
    """

    kind: Literal["cosine", "constant", "step"] = "cosine"
    warmup_epochs: float = attrs.field(default=0.0, validator=v.ge(0))
    warmup_start_ratio: float = attrs.field(default=0.0, validator=v.ge(0))
    final_lr_ratio: float = attrs.field(default=0.0, validator=v.ge(0))
    weight_decay_end: float | None = attrs.field(default=None, validator=v.optional(v.ge(0)))
    milestones: tuple[float, ...] = ()
    factors: tuple[float, ...] = ()

    def __attrs_post_init__(self) -> None:
        if (self.kind == "step") != bool(self.milestones):
            raise ValueError("milestones are required by kind = 'step' and only used by it")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {list(self.milestones)}")
        if len(self.factors) != len(self.milestones) or any(f <= 0 for f in self.factors):
            raise ValueError("factors needs one positive lr multiplier per milestone")
