"""Optimizer construction and the per-step learning-rate / weight-decay schedule."""

from __future__ import annotations

import math

import timm.optim
import torch
from torch import nn

from sslcore.engine.lars import UpdateNormLars
from sslcore.engine.settings import OptimizerSettings, ScheduleSettings
from sslcore.errors import SslcoreError


def parameter_groups(model: nn.Module, settings: OptimizerSettings, lr: float) -> list[dict]:
    """Split trainable parameters into groups by (weight decay or not, fixed learning rate or not).

    1-D parameters (biases, norm scales and shifts) get no weight decay when ``exclude_bias_and_norm``; with LARS
    a zero weight decay also means no trust-ratio adaptation (timm's ``Lars``; :class:`UpdateNormLars` reads the
    group's ``lars_adapt``), as SimCLR and BYOL exclude them (SwAV's official LARC does not: its recipes set
    ``exclude_bias_and_norm = false``).
    """
    groups: dict[tuple[bool, bool], dict] = {}
    matched_prefixes: set[str] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = not (settings.exclude_bias_and_norm and param.ndim <= 1)
        prefix = next((p for p in settings.fixed_lr_prefixes if name.startswith(p)), None)
        if prefix is not None:
            matched_prefixes.add(prefix)
        key = (decay, prefix is not None)
        group = groups.setdefault(
            key,
            {
                "params": [],
                "weight_decay": settings.weight_decay if decay else 0.0,
                "base_weight_decay": settings.weight_decay if decay else 0.0,
                "lr": lr,
                "base_lr": lr,
                "fixed_lr": prefix is not None,
                "lars_adapt": decay,
            },
        )
        group["params"].append(param)
    unmatched = sorted(set(settings.fixed_lr_prefixes) - matched_prefixes)
    if unmatched:
        raise SslcoreError(
            f"optimizer.fixed_lr_prefixes names no parameter: {', '.join(unmatched)}",
            hint="prefixes match the method's parameter names, e.g. 'predictor.'",
        )
    return list(groups.values())


def build_optimizer(model: nn.Module, settings: OptimizerSettings, batch_size: int) -> torch.optim.Optimizer:
    """SGD, AdamW (torch) or LARS (timm's, or :class:`UpdateNormLars` for ``trust_ratio = "update_norm"``) over
    :func:`parameter_groups`, at the scaled learning rate."""
    lr = settings.lr(batch_size)
    groups = parameter_groups(model, settings, lr)
    if settings.kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=settings.momentum, nesterov=settings.nesterov)
    if settings.kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(settings.betas), eps=settings.eps)
    if settings.trust_ratio == "update_norm":
        return UpdateNormLars(groups, lr=lr, momentum=settings.momentum, nesterov=settings.nesterov,
                              trust_coeff=settings.trust_coefficient)
    return timm.optim.Lars(groups, lr=lr, momentum=settings.momentum, nesterov=settings.nesterov,
                           trust_coeff=settings.trust_coefficient)


def cosine(start: float, end: float, progress: float) -> float:
    """Cosine interpolation from ``start`` (progress 0) to ``end`` (progress 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


class StepSchedule:
    """Warm-up then cosine (or constant) learning rate, and the optional cosine weight decay, per optimizer step."""

    def __init__(self, settings: ScheduleSettings, total_steps: int, steps_per_epoch: int) -> None:
        self.settings = settings
        self.total_steps = total_steps
        self.warmup_steps = min(round(settings.warmup_epochs * steps_per_epoch), total_steps)
        self.milestone_steps = [round(epoch * steps_per_epoch) for epoch in settings.milestones]

    def lr_factor(self, step: int) -> float:
        s = self.settings
        if step < self.warmup_steps:
            return s.warmup_start_ratio + (1.0 - s.warmup_start_ratio) * step / self.warmup_steps
        if s.kind == "constant":
            return 1.0
        if s.kind == "step":
            passed = sum(step >= milestone for milestone in self.milestone_steps)
            return s.factors[passed - 1] if passed else 1.0
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        return cosine(1.0, s.final_lr_ratio, (step - self.warmup_steps) / decay_steps)

    def weight_decay(self, base: float, step: int) -> float:
        end = self.settings.weight_decay_end
        if end is None or base == 0.0:
            return base
        return cosine(base, end, step / max(self.total_steps - 1, 1))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's lr and weight decay for ``step``; return the scheduled lr of the main group."""
        factor = self.lr_factor(step)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] if group["fixed_lr"] else group["base_lr"] * factor
            group["weight_decay"] = self.weight_decay(group["base_weight_decay"], step)
        return optimizer.param_groups[0]["base_lr"] * factor
