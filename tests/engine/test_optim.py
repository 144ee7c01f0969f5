"""Parameter groups, learning-rate scaling and the per-step schedules."""

from __future__ import annotations

import math

import pytest
import timm.optim
from torch import nn

from sslcore.engine.optim import StepSchedule, build_optimizer
from sslcore.engine.settings import OptimizerSettings, ScheduleSettings
from sslcore.errors import SslcoreError


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
        self.predictor = nn.Linear(8, 2)


def groups_by_flags(optimizer):
    return {(g["base_weight_decay"] > 0, g["fixed_lr"]): g for g in optimizer.param_groups}


def test_bias_and_norm_get_no_weight_decay_and_lars_skips_them():
    settings = OptimizerSettings(kind="lars", base_lr=0.3, weight_decay=1e-6)
    optimizer = build_optimizer(Net(), settings, batch_size=512)
    assert isinstance(optimizer, timm.optim.Lars)
    groups = groups_by_flags(optimizer)
    decayed, plain = groups[(True, False)], groups[(False, False)]
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert plain["weight_decay"] == 0.0  # timm's Lars adapts only where weight_decay != 0
    assert decayed["lr"] == pytest.approx(0.3 * 512 / 256)


def test_fixed_lr_prefix_keeps_its_rate_through_the_schedule():
    settings = OptimizerSettings(kind="sgd", base_lr=0.05, weight_decay=1e-4, fixed_lr_prefixes=("predictor.",))
    optimizer = build_optimizer(Net(), settings, batch_size=256)
    schedule = StepSchedule(ScheduleSettings(kind="cosine"), total_steps=10, steps_per_epoch=5)
    schedule.apply(optimizer, 9)
    for group in optimizer.param_groups:
        if group["fixed_lr"]:
            assert group["lr"] == pytest.approx(0.05)
        else:
            assert group["lr"] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 9 / 10)))


def test_unknown_fixed_lr_prefix_is_an_error():
    with pytest.raises(SslcoreError, match="names no parameter: head."):
        build_optimizer(Net(), OptimizerSettings(kind="sgd", base_lr=0.1, fixed_lr_prefixes=("head.",)), 256)


def test_warmup_cosine_final_ratio_and_weight_decay_schedule():
    schedule = StepSchedule(ScheduleSettings(warmup_epochs=2, final_lr_ratio=0.001, weight_decay_end=0.4),
                            total_steps=20, steps_per_epoch=5)
    assert [schedule.lr_factor(s) for s in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    assert schedule.lr_factor(10) == pytest.approx(1.0)
    expected = 0.001 + (1 - 0.001) * 0.5 * (1 + math.cos(math.pi * 5 / 10))
    assert schedule.lr_factor(15) == pytest.approx(expected)
    assert schedule.weight_decay(0.04, 0) == pytest.approx(0.04)
    assert schedule.weight_decay(0.04, 19) == pytest.approx(0.4)
    assert schedule.weight_decay(0.0, 19) == 0.0


def test_step_schedule_decays_at_milestone_epochs():
    schedule = StepSchedule(ScheduleSettings(kind="step", milestones=(2, 3), factors=(0.1, 0.01)), total_steps=20,
                            steps_per_epoch=5)
    assert [schedule.lr_factor(s) for s in (0, 9, 10, 14, 15, 19)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="milestones"):
        ScheduleSettings(kind="step")
