"""The ``dino`` method's options (recipe table ``[method]``); the method itself is built by
:mod:`sslcore_plugin_dino.method`, imported only when a run builds it (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs
from attrs import validators as v


@attrs.frozen(kw_only=True)
class DINOConfig:
    """DINO: a multi-crop student distilled from its EMA teacher's centred, sharpened outputs.

    Options of the ``dino`` method. Its recipe tables: ``[backbone]``, ``[heads.projector]`` (the ``dino`` head),
    ``[target_updater]`` (``ema``, cosine momentum, ``buffers = "own"`` as the official code) and ``[loss]``
    (``soft_cross_entropy``: its temperature is the student's, 0.1), with ``[views]`` giving 2 global crops first.

    Fields:
        warmup_teacher_temp: teacher temperature in the first epoch (paper / official ``--warmup_teacher_temp``: 0.04).
        teacher_temp: teacher temperature after the warm-up (paper: 0.07; the official code's default is 0.04).
        warmup_teacher_temp_epochs: epochs of the linear temperature warm-up (paper: 30; official default 0).
        center_momentum: momentum m of the centre, ``c <- m c + (1 - m) mean(teacher outputs)`` (paper Eq. 4: 0.9).
        freeze_last_layer: epochs during which the head's last layer gets no update (official: 1).
        clip_grad: largest L2 norm of EACH parameter's gradient (official ``--clip_grad``: 3.0; 0 disables it).
    """

    warmup_teacher_temp: float = attrs.field(default=0.04, validator=v.gt(0))
    teacher_temp: float = attrs.field(default=0.07, validator=v.gt(0))
    warmup_teacher_temp_epochs: int = attrs.field(default=30, validator=v.ge(0))
    center_momentum: float = attrs.field(default=0.9, validator=[v.ge(0), v.lt(1)])
    freeze_last_layer: int = attrs.field(default=1, validator=v.ge(0))
    clip_grad: float = attrs.field(default=3.0, validator=v.ge(0))
