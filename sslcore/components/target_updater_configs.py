"""The built-in target updaters' options (``copy``, ``ema``, ``stop_grad``) and their registration; the updaters
are built by :mod:`sslcore.components.target_updaters`, imported only when a run builds one."""

from __future__ import annotations

from typing import Literal

import attrs

from sslcore import hookimpl


@attrs.frozen(kw_only=True)
class CopyConfig:
    """A frozen copy of the online network, overwritten with its parameters and buffers after every step."""


@attrs.frozen(kw_only=True)
class EMAConfig:
    """An exponential moving average of the online network: ``t <- m*t + (1-m)*o`` after every step.

    Attributes:
        base_momentum: m at step 0 (MoCo v1/v2: 0.999; BYOL: 0.996; MoCo v3: 0.99; DINO: 0.996).
        schedule: ``constant`` keeps m = base_momentum (MoCo v1/v2); ``cosine`` raises it per optimizer step k
            of K = total_steps as ``m = final - (final - base) * (cos(pi*k/K) + 1) / 2`` (BYOL Sec. 3.2 with
            final = 1; DINO and MoCo v3 use the same curve).
        final_momentum: m reached at the last step of the cosine schedule (1.0 in BYOL, DINO, MoCo v3).
        buffers: what happens to the target's buffers (BatchNorm running statistics). ``ema`` averages the
            floating-point buffers with the same momentum and copies the integer ones (``num_batches_tracked``),
            so the target's statistics follow its weights even if it never runs in training mode. ``own``
            leaves them to the target's own forward passes in training mode, as the official MoCo, MoCo v3,
            BYOL and DINO code does (their momentum updates loop over ``parameters()`` only); choose it to
            reproduce them exactly, knowing the statistics go stale if the target runs in eval mode.
            ``copy`` overwrites them with the online network's.
    """

    base_momentum: float = attrs.field(default=0.999, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
    schedule: Literal["constant", "cosine"] = attrs.field(
        default="constant", validator=attrs.validators.in_(("constant", "cosine"))
    )
    final_momentum: float = attrs.field(default=1.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
    buffers: Literal["ema", "copy", "own"] = attrs.field(
        default="ema", validator=attrs.validators.in_(("ema", "copy", "own"))
    )

    def __attrs_post_init__(self) -> None:
        if self.schedule == "constant" and self.final_momentum != 1.0:
            raise ValueError(
                f"final_momentum={self.final_momentum} only applies to schedule = 'cosine'; "
                "set schedule = 'cosine' or drop final_momentum"
            )


@attrs.frozen(kw_only=True)
class StopGradConfig:
    """The target is the online network with its gradient stopped (SimSiam); nothing to update."""


@hookimpl
def sslcore_register_target_updaters(registry):
    registry.add("copy", "sslcore.components.target_updaters:build_copy", CopyConfig)
    registry.add("ema", "sslcore.components.target_updaters:build_ema", EMAConfig)
    registry.add("stop_grad", "sslcore.components.target_updaters:build_stop_grad", StopGradConfig)
