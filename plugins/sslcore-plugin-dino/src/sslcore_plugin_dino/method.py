"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", sec. 3.1, Algorithm 1).

A student network ``g_s = h_s o f_s`` (backbone, projection head) is trained to match the output distribution of a
teacher ``g_t`` of the same architecture: ``min -sum P_t(x) log P_s(x')`` over pairs of different crops, where the
teacher sees only the 2 global crops and the student all crops (multi-crop, Eq. 3). The teacher is an exponential
moving average of the student (the recipe's ``ema`` target updater, cosine momentum 0.996 -> 1); its output is
centred (a running mean ``c`` of its outputs over the global batch) and sharpened (a low temperature ``tau_t``)
before the softmax, which together avoid collapse (sec. 3.1, Eq. 4).

As the official code (facebookresearch/dino ``main_dino.py``, ``utils.py``, ``vision_transformer.py``):

- crops of one resolution go through the backbone together, the head sees all crops at once (``MultiCropWrapper``);
- the loss averages the cross-entropy over every (teacher crop ``iq``, student crop ``v``) pair with ``v != iq``,
  each pair a batch mean (``DINOLoss.forward``); the student temperature is the ``[loss]`` table's;
- ``tau_t`` warms up per EPOCH (``teacher_temp_schedule[epoch]``);
- the centre is updated after the loss with the teacher outputs summed over all processes and divided by the global
  number of teacher rows (``update_center``), and is a persistent buffer (saved in checkpoints);
- after backward each parameter's gradient is clipped to norm ``clip_grad`` (``utils.clip_gradients``; not the
  global norm of ``[run] grad_clip``) and the head's last layer gets no update while ``epoch < freeze_last_layer``
  (``utils.cancel_gradients_last_layer``);
- the teacher has no stochastic depth (the official teacher is built without ``drop_path_rate``) and runs in
  training mode (its BatchNorm layers, if any, use batch statistics and keep their own running statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from sslcore.components.target_updaters import TargetUpdater
from sslcore.distributed import all_reduce_sum, world_size
from sslcore.errors import SslcoreError
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo
from sslcore_plugin_dino.config import DINOConfig
from sslcore_plugin_dino.gradients import cancel_gradients_, clip_gradients_per_parameter_
from sslcore_plugin_dino.multicrop import MultiCropNetwork
from sslcore_plugin_dino.schedules import teacher_temperature

#: DINO's teacher sees exactly the first two crops, the global ones (official ``teacher(images[:2])``).
GLOBAL_CROPS = 2


class DINO(Method):
    """:attr:`student` (backbone + head, a :class:`MultiCropNetwork`), :attr:`teacher` made from it by the target
    updater, and the centre :attr:`center` ``(1, K)`` of the teacher's outputs."""

    center: torch.Tensor

    def __init__(self, config: DINOConfig, student: MultiCropNetwork, updater: TargetUpdater, loss: nn.Module) -> None:
        super().__init__()
        out_dim = getattr(student.head, "out_dim", None)
        if not isinstance(out_dim, int):
            raise SslcoreError("the DINO head must expose its output width as an int attribute `out_dim`")
        if config.freeze_last_layer > 0 and not isinstance(getattr(student.head, "last_layer", None), nn.Module):
            raise SslcoreError(
                f"method.freeze_last_layer = {config.freeze_last_layer} needs a head with a `last_layer` module, "
                f"but [heads.projector] built a {type(student.head).__name__}",
                hint='use [heads.projector] kind = "dino", or set method.freeze_last_layer = 0',
            )
        self.config = config
        self.student = student
        self.teacher = self.follow(student, updater, when="after_step")  # the engine moves it after each step
        _disable_stochastic_depth(self.teacher)
        self.loss = loss
        self.register_buffer("center", torch.zeros(1, out_dim))

    @property
    def backbone(self) -> nn.Module:  # type: ignore[override]
        """The student backbone (evaluated and exported)."""
        return self.student.backbone

    def teacher_temperature(self, epoch: int) -> float:
        """tau_t in ``epoch`` (0-based), per the method's warm-up fields."""
        c = self.config
        return teacher_temperature(
            epoch, warmup_temp=c.warmup_teacher_temp, temp=c.teacher_temp, warmup_epochs=c.warmup_teacher_temp_epochs
        )

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:
        crops = batch.views
        if len(crops) < GLOBAL_CROPS:
            raise SslcoreError(
                f"dino trains on 2 global crops (then any local crops), the batch has {len(crops)} view(s)",
                hint='use [views] kind = "multicrop" with style = "dino"',
            )
        with torch.no_grad():
            teacher_out = self.teacher(crops[:GLOBAL_CROPS])  # (2B, K)
        student_out = self.student(crops)  # (V * B, K)
        temperature = self.teacher_temperature(step.epoch)
        # Eq. 4 / DINOLoss: centring and sharpening of the teacher, no gradient through it.
        targets = F.softmax((teacher_out - self.center) / temperature, dim=-1).chunk(GLOBAL_CROPS)
        predictions = student_out.chunk(len(crops))
        terms = [
            self.loss(target, prediction)
            for iq, target in enumerate(targets)
            for crop, prediction in enumerate(predictions)
            if crop != iq  # Eq. 3: never the same crop for teacher and student
        ]
        loss = torch.stack(terms).mean()
        self._update_center(teacher_out)
        return MethodOutput(loss, {"teacher_temp": temperature})

    @torch.no_grad()
    def _update_center(self, teacher_out: torch.Tensor) -> None:
        """``c <- m c + (1 - m) * mean over the GLOBAL batch of the teacher outputs`` (official ``update_center``)."""
        # In the centre's precision (float32 under autocast), however low the teacher's output precision.
        batch_center = all_reduce_sum(teacher_out.to(self.center.dtype).sum(dim=0, keepdim=True))
        batch_center /= teacher_out.shape[0] * world_size()
        m = self.config.center_momentum
        self.center.mul_(m).add_(batch_center, alpha=1.0 - m)

    def before_optimizer_step(self, step: StepInfo) -> None:
        if step.epoch < self.config.freeze_last_layer:
            cancel_gradients_(self.student.head.last_layer)
        if self.config.clip_grad > 0:
            clip_gradients_per_parameter_(self.student.parameters(), self.config.clip_grad)


def _disable_stochastic_depth(network: nn.Module) -> None:
    """Turn off timm's stochastic depth in ``network`` (the teacher): DINO builds its teacher without drop path."""
    for module in network.modules():
        if isinstance(module, DropPath):
            module.drop_prob = 0.0


def build_dino(config: DINOConfig, parts: MethodParts) -> DINO:
    """DINO: a multi-crop student distilled from its EMA teacher's centred, sharpened outputs."""
    backbone = parts.backbone()
    head = parts.head("projector", in_dim=backbone.num_features)
    return DINO(config, MultiCropNetwork(backbone, head), parts.target_updater(), parts.loss())
