"""Gradient surgery of DINO's step (official dino ``utils.clip_gradients``, ``utils.cancel_gradients_last_layer``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def clip_gradients_per_parameter_(parameters: Iterable[nn.Parameter], max_norm: float) -> None:
    """Rescale EACH parameter's gradient to L2 norm at most ``max_norm``, in place.

    Unlike ``torch.nn.utils.clip_grad_norm_`` (one global norm), every tensor is clipped on its own, with the
    official ``clip_coef = max_norm / (norm + 1e-6)`` applied when it is below 1 (as a factor of at most 1, so the
    step does not wait for the device to compare).
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    for parameter in parameters:
        if parameter.grad is None:
            continue
        coefficient = max_norm / (parameter.grad.norm(2) + 1e-6)
        parameter.grad.mul_(coefficient.clamp(max=1.0))  # x * 1.0 == x exactly


def cancel_gradients_(module: nn.Module) -> None:
    """Drop the gradients of ``module``'s parameters (``grad = None``), so the optimizer skips them entirely: no
    update, no weight decay, no change to Adam's moments, as the official code freezing DINO's last layer."""
    for parameter in module.parameters():
        parameter.grad = None
