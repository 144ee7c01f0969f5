"""Target updaters: copy, EMA (with BatchNorm buffers and the cosine schedule) and stop-gradient."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sslcore.components import target_updater_configs
from sslcore.components.target_updaters import (
    CopyUpdater,
    EMAConfig,
    EMAUpdater,
    StopGradient,
    StopGradUpdater,
    build_ema,
)
from sslcore.errors import SslcoreError
from sslcore.registry import Registry


def _online() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _train_a_little(online: nn.Module) -> None:
    """Change the online weights and BatchNorm statistics, as a training step would."""
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    online.train()
    online(torch.randn(8, 3) * 3 + 1)


def test_registered_names():
    registry = Registry("target_updater")
    target_updater_configs.sslcore_register_target_updaters(registry)
    assert registry.names() == ["copy", "ema", "stop_grad"]
    built = {entry.name: entry.build(entry.config(), total_steps=10) for entry in registry}
    assert isinstance(built["copy"], CopyUpdater)
    assert isinstance(built["ema"], EMAUpdater) and built["ema"].momentum(3) == 0.999
    assert isinstance(built["stop_grad"], StopGradUpdater)


def test_ema_config_validation():
    with pytest.raises(ValueError, match="only applies to schedule"):
        EMAConfig(final_momentum=0.99)
    with pytest.raises(ValueError):
        EMAConfig(base_momentum=1.5)
    with pytest.raises(ValueError):
        EMAConfig(buffers="sometimes")
    with pytest.raises(SslcoreError, match="number of training steps"):
        build_ema(EMAConfig(schedule="cosine"), total_steps=0)


@pytest.mark.parametrize("updater", [CopyUpdater(), EMAUpdater()])
def test_make_target_is_a_frozen_independent_copy(updater):
    online = _online()
    target = updater.make_target(online)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    for (name, t), (_, o) in zip(target.state_dict().items(), online.state_dict().items()):
        assert torch.equal(t, o) and t.data_ptr() != o.data_ptr(), name


def test_copy_updater_copies_parameters_and_buffers():
    online = _online()
    updater = CopyUpdater()
    target = updater.make_target(online)
    _train_a_little(online)
    updater.update(online, target, step=0)
    for (name, t), (_, o) in zip(target.state_dict().items(), online.state_dict().items()):
        assert torch.equal(t, o), name


@pytest.mark.parametrize("buffers", ["ema", "copy", "own"])
def test_ema_matches_the_explicit_formula_for_parameters_and_buffers(buffers):
    online = _online()
    updater = EMAUpdater(base_momentum=0.9, buffers=buffers)
    target = updater.make_target(online)
    _train_a_little(target)  # target and online differ in weights and statistics
    _train_a_little(online)
    before = {name: value.clone() for name, value in target.state_dict().items()}
    parameter_names = {name for name, _ in online.named_parameters()}
    updater.update(online, target, step=5)

    for name, o in online.state_dict().items():
        t = target.state_dict()[name]
        if name in parameter_names:
            expected = 0.9 * before[name] + 0.1 * o
        elif buffers == "own":
            expected = before[name]
        elif name.endswith("num_batches_tracked") or buffers == "copy":
            expected = o
        else:  # running_mean / running_var averaged with the same momentum
            expected = 0.9 * before[name] + 0.1 * o
        assert torch.allclose(t, expected, atol=1e-6), name
    if buffers != "own":
        assert not torch.equal(target[1].running_mean, before["1.running_mean"])


def test_cosine_momentum_schedule_matches_byol():
    updater = EMAUpdater(base_momentum=0.996, schedule="cosine", total_steps=100)
    assert updater.momentum(0) == pytest.approx(0.996)
    assert updater.momentum(50) == pytest.approx(0.998)  # half-way between base and final
    assert updater.momentum(100) == pytest.approx(1.0)
    assert updater.momentum(250) == pytest.approx(1.0)
    for k in (1, 25, 70, 99):  # BYOL Sec. 3.2: tau = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2
        assert updater.momentum(k) == pytest.approx(1 - 0.004 * (math.cos(math.pi * k / 100) + 1) / 2, abs=1e-12)
    to_final = EMAUpdater(base_momentum=0.99, schedule="cosine", final_momentum=0.999, total_steps=10)
    assert to_final.momentum(0) == pytest.approx(0.99) and to_final.momentum(10) == pytest.approx(0.999)
    values = [updater.momentum(k) for k in range(101)]
    assert values == sorted(values)
    with pytest.raises(SslcoreError, match=">= 0"):
        updater.momentum(-1)


def test_ema_update_uses_the_scheduled_momentum_of_the_step():
    online = _online()
    updater = EMAUpdater(base_momentum=0.5, schedule="cosine", total_steps=4)
    target = updater.make_target(online)
    _train_a_little(online)
    before = target[0].weight.clone()
    updater.update(online, target, step=2)  # m = 0.75
    assert torch.allclose(target[0].weight, 0.75 * before + 0.25 * online[0].weight)
    updater.update(online, target, step=4)  # m = 1: the target no longer moves
    assert torch.allclose(target[0].weight, 0.75 * before + 0.25 * online[0].weight)


def test_ema_target_and_schedule_round_trip_through_state_dicts():
    online = _online()
    config = EMAConfig(base_momentum=0.9, schedule="cosine")
    updater = build_ema(config, total_steps=20)
    target = updater.make_target(online)
    for step in range(3):
        _train_a_little(online)
        updater.update(online, target, step)
    saved_target = {name: value.clone() for name, value in target.state_dict().items()}
    saved_updater = updater.state_dict()

    resumed = build_ema(config, total_steps=20)
    resumed.load_state_dict(saved_updater)
    resumed_target = resumed.make_target(_online())
    resumed_target.load_state_dict(saved_target)
    _train_a_little(online)
    updater.update(online, target, 3)
    resumed.update(online, resumed_target, 3)
    for (name, a), (_, b) in zip(target.state_dict().items(), resumed_target.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(SslcoreError, match="holds no state"):
        resumed.load_state_dict({"step": 3})


def test_update_rejects_a_target_of_another_network():
    online = _online()
    other = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    with pytest.raises(SslcoreError, match="do not match"):
        EMAUpdater().update(online, other, 0)
    with pytest.raises(SslcoreError, match="has shape"):
        CopyUpdater().update(nn.Linear(3, 4), nn.Linear(3, 5), 0)
    with pytest.raises(SslcoreError, match="must wrap the online network"):
        StopGradUpdater().update(online, StopGradient(_online()), 0)


def test_stop_grad_shares_weights_and_blocks_the_gradient():
    online = nn.Linear(3, 2)
    updater = StopGradUpdater()
    target = updater.make_target(online)
    assert list(target.parameters()) == [] and target.state_dict() == {}  # weights are saved once, with online

    x = torch.randn(5, 3)
    out = target(x)
    assert not out.requires_grad and torch.equal(out, online(x))
    (online(x).sum() + (target(x) ** 2).sum()).backward()  # the target path adds nothing
    assert torch.allclose(online.weight.grad, x.sum(0).expand(2, 3))

    with torch.no_grad():
        online.weight.add_(1.0)
    assert torch.equal(target(x), online(x))  # same weights, not a copy
    updater.update(online, target, 0)
    assert torch.equal(target(x), online(x))
