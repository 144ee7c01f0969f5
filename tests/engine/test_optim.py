"""Parameter groups, learning-rate scaling and the per-step schedules."""

from __future__ import annotations

import math

import pytest
import timm.optim
import torch
from torch import nn

from sslcore.engine.lars import UpdateNormLars
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


def test_update_norm_lars_matches_a_hand_computed_official_step():
    """moco-v3 moco/optimizer.py and google-research/simclr lars_optimizer.py: q = eta ||w|| / ||g + lambda w||."""
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
        net.bias.fill_(1.0)
    settings = OptimizerSettings(kind="lars", base_lr=0.5, lr_scaling="none", weight_decay=0.1, momentum=0.9,
                                 trust_coefficient=0.01, trust_ratio="update_norm")
    optimizer = build_optimizer(net, settings, batch_size=256)
    assert isinstance(optimizer, UpdateNormLars)
    for _ in range(2):
        net.weight.grad, net.bias.grad = torch.tensor([[0.7, -2.4]]), torch.tensor([2.0])
        optimizer.step()
    # step 1: u = g + 0.1 w = (1.0, -2.0), ||u|| = sqrt(5); q = 0.01 * 5 / sqrt(5); w1 = w - 0.5 q u.
    q1 = 0.01 * 5 / math.sqrt(5)
    w1 = [3.0 - 0.5 * q1 * 1.0, 4.0 + 0.5 * q1 * 2.0]
    u2 = [0.7 + 0.1 * w1[0], -2.4 + 0.1 * w1[1]]
    q2 = 0.01 * math.hypot(*w1) / math.hypot(*u2)
    mu2 = [0.9 * q1 * 1.0 + q2 * u2[0], 0.9 * q1 * -2.0 + q2 * u2[1]]
    assert net.weight.tolist()[0] == pytest.approx([w1[0] - 0.5 * mu2[0], w1[1] - 0.5 * mu2[1]], rel=1e-6)
    # the bias is excluded: plain momentum SGD, no decay, no trust ratio (mu = 2, then 0.9 * 2 + 2)
    assert net.bias.item() == pytest.approx(1.0 - 0.5 * 2.0 - 0.5 * 3.8, rel=1e-6)
    # timm's form would have used q = eta ||w|| / (||g|| + lambda ||w||): a different first step
    timm_q1 = 0.01 * 5 / (math.hypot(0.7, 2.4) + 0.1 * 5)
    assert abs(timm_q1 - q1) > 1e-3


def test_trust_ratio_belongs_to_lars():
    with pytest.raises(ValueError, match="trust_ratio is a LARS option"):
        OptimizerSettings(kind="sgd", base_lr=0.1, trust_ratio="update_norm")
