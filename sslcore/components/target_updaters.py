"""Target updaters: how the target (key / teacher) network follows the online one.

- ``copy``: the target is a frozen copy refreshed with the online weights after every step.
- ``ema``: the target is an exponential moving average of the online network (MoCo, BYOL, DINO).
- ``stop_grad``: the target is the online network itself with the gradient stopped (SimSiam).
"""

from __future__ import annotations

import abc
import copy
import math
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import nn

from sslcore.components.target_updater_configs import CopyConfig, EMAConfig, StopGradConfig
from sslcore.errors import SslcoreError


class TargetUpdater(abc.ABC):
    """Makes the target network and keeps it in step with the online network.

    The engine calls :meth:`make_target` once, then :meth:`update` after every optimizer step with the
    0-based index of the step just taken. The built-in updaters hold no state of their own (the schedule is a
    function of ``step``; the target's weights are saved with the method's modules), so ``state_dict`` is empty.
    """

    @abc.abstractmethod
    def make_target(self, online: nn.Module) -> nn.Module:
        """Return the target network for ``online``."""

    @abc.abstractmethod
    def update(self, online: nn.Module, target: nn.Module, step: int) -> None:
        """Move ``target`` towards ``online`` after optimizer step ``step``."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise SslcoreError(
                f"{type(self).__name__} holds no state but was given {sorted(state)}",
                hint="the checkpoint was written with a different target updater",
            )


def frozen_copy(online: nn.Module) -> nn.Module:
    """A deep copy of ``online`` whose parameters do not require gradients."""
    target = copy.deepcopy(online)
    target.requires_grad_(False)
    return target


def _pairs(
    target: Iterator[tuple[str, torch.Tensor]], online: Iterator[tuple[str, torch.Tensor]], what: str
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Matching tensors of the target and the online network, checked by name and shape."""
    target_items, online_items = list(target), list(online)
    target_names = [name for name, _ in target_items]
    online_names = [name for name, _ in online_items]
    if target_names != online_names:
        diff = sorted(set(target_names) ^ set(online_names)) or ["(same names, different order)"]
        raise SslcoreError(
            f"the target's {what} do not match the online network's: {', '.join(diff[:5])}",
            hint="build the target with make_target(online)",
        )
    for (name, t), (_, o) in zip(target_items, online_items):
        if t.shape != o.shape:
            raise SslcoreError(f"target {what[:-1]} '{name}' has shape {tuple(t.shape)}, online {tuple(o.shape)}")
    return [t for _, t in target_items], [o for _, o in online_items]


def _split_buffers(
    target: nn.Module, online: nn.Module
) -> tuple[tuple[list[torch.Tensor], list[torch.Tensor]], tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """Buffers of both networks as (floating target, floating online), (other target, other online)."""
    t_buffers, o_buffers = _pairs(target.named_buffers(), online.named_buffers(), "buffers")
    floating = [i for i, b in enumerate(t_buffers) if b.is_floating_point()]
    other = [i for i, b in enumerate(t_buffers) if not b.is_floating_point()]
    return (
        ([t_buffers[i] for i in floating], [o_buffers[i] for i in floating]),
        ([t_buffers[i] for i in other], [o_buffers[i] for i in other]),
    )


class CopyUpdater(TargetUpdater):
    """``target := online`` (parameters and buffers) after every step."""

    def make_target(self, online: nn.Module) -> nn.Module:
        return frozen_copy(online)

    @torch.no_grad()
    def update(self, online: nn.Module, target: nn.Module, step: int) -> None:
        t_params, o_params = _pairs(target.named_parameters(), online.named_parameters(), "parameters")
        t_buffers, o_buffers = _pairs(target.named_buffers(), online.named_buffers(), "buffers")
        if t_params:
            torch._foreach_copy_(t_params, o_params)
        if t_buffers:
            torch._foreach_copy_(t_buffers, o_buffers)


class EMAUpdater(TargetUpdater):
    """Momentum (mean teacher) update, with ``torch._foreach`` ops over all tensors at once."""

    def __init__(
        self,
        *,
        base_momentum: float = 0.999,
        schedule: Literal["constant", "cosine"] = "constant",
        final_momentum: float = 1.0,
        buffers: Literal["ema", "copy", "own"] = "ema",
        total_steps: int = 0,
    ) -> None:
        if schedule == "cosine" and total_steps <= 0:
            raise SslcoreError(f"a cosine momentum schedule needs the number of training steps, got {total_steps}")
        self.base_momentum = base_momentum
        self.schedule = schedule
        self.final_momentum = final_momentum
        self.buffers = buffers
        self.total_steps = total_steps

    def momentum(self, step: int) -> float:
        """m for the update after optimizer step ``step`` (0-based); steps past the end keep the final value."""
        if step < 0:
            raise SslcoreError(f"momentum step must be >= 0, got {step}")
        if self.schedule == "constant":
            return self.base_momentum
        progress = min(step, self.total_steps) / self.total_steps
        return self.final_momentum - (self.final_momentum - self.base_momentum) * (math.cos(math.pi * progress) + 1) / 2

    def make_target(self, online: nn.Module) -> nn.Module:
        return frozen_copy(online)

    @torch.no_grad()
    def update(self, online: nn.Module, target: nn.Module, step: int) -> None:
        weight = 1.0 - self.momentum(step)  # lerp: t + w*(o - t) = m*t + (1-m)*o
        t_params, o_params = _pairs(target.named_parameters(), online.named_parameters(), "parameters")
        if t_params:
            torch._foreach_lerp_(t_params, o_params, weight)
        if self.buffers == "own":
            return
        (t_float, o_float), (t_other, o_other) = _split_buffers(target, online)
        if t_float:
            if self.buffers == "ema":
                torch._foreach_lerp_(t_float, o_float, weight)
            else:
                torch._foreach_copy_(t_float, o_float)
        if t_other:
            torch._foreach_copy_(t_other, o_other)


class StopGradient(nn.Module):
    """The online network run under ``torch.no_grad()``: same weights, no gradient through this path.

    The online module is referenced, not registered as a submodule, so its weights are saved once (with the
    online network) and the target adds no parameters. SimSiam's official code detaches the online
    projection of the same forward pass (``z1.detach()``); a method that already has that output should
    detach it rather than call this wrapper, which runs a second forward (and, in training mode, updates
    BatchNorm statistics a second time).
    """

    def __init__(self, online: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "online", online)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.online(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"online={type(self.online).__name__}"


class StopGradUpdater(TargetUpdater):
    """Shares the online weights; :meth:`update` has nothing to do."""

    def make_target(self, online: nn.Module) -> nn.Module:
        return StopGradient(online)

    def update(self, online: nn.Module, target: nn.Module, step: int) -> None:
        if not isinstance(target, StopGradient) or target.online is not online:
            raise SslcoreError("a stop_grad target must wrap the online network", hint="use make_target(online)")


def build_copy(config: CopyConfig, total_steps: int) -> CopyUpdater:
    """A frozen copy of the online network, refreshed after every step."""
    return CopyUpdater()


def build_ema(config: EMAConfig, total_steps: int) -> EMAUpdater:
    """Exponential moving average of the online network, constant or cosine momentum (MoCo, BYOL, DINO)."""
    return EMAUpdater(
        base_momentum=config.base_momentum,
        schedule=config.schedule,
        final_momentum=config.final_momentum,
        buffers=config.buffers,
        total_steps=total_steps,
    )


def build_stop_grad(config: StopGradConfig, total_steps: int) -> StopGradUpdater:
    """The online network with the gradient stopped (SimSiam)."""
    return StopGradUpdater()


