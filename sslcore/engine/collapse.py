"""The collapse guard: warn once when a contrastive loss sits at the value it takes when all embeddings coincide.

Every loss module of the method that implements ``collapse_value(query, keys)`` (the InfoNCE family:
``infonce``, ``ntxent``, ``mocov3_contrastive``, ``supcon``, ``invaspread``; see
:mod:`sslcore.components.losses.collapse`) is watched through a forward hook: each call adds ``|loss - collapse
value|`` to a sum kept on the device, so no step waits on the host. At each logged step the engine asks
:meth:`CollapseGuard.check`; a loss whose mean distance over the window is below ``tolerance`` times its collapse
value is reported once per run, in one line. Losses without a collapse value (NCE, whose value depends on its
normalising constant; BYOL's or DINO's, where collapse has no fixed value) are not watched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class CollapseGuard:
    """Watches the contrastive losses inside ``model``; :meth:`check` returns a warning line once, or None."""

    def __init__(self, model: nn.Module, tolerance: float = 1e-3) -> None:
        self.tolerance = tolerance
        self.warned = False
        self._windows: dict[str, list[Any]] = {}  # module -> [sum of |loss - value| (tensor), calls, value]
        for path, module in model.named_modules():
            if callable(getattr(module, "collapse_value", None)):
                name = f"{path or 'loss'} ({type(module).__name__})"
                self._windows[name] = [0.0, 0, 0.0]
                module.register_forward_hook(self._hook(name))

    @property
    def watched(self) -> list[str]:
        """The names of the watched loss modules."""
        return list(self._windows)

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[Any, ...], torch.Tensor], None]:
        def record(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            value = module.collapse_value(*args)
            window = self._windows[name]
            window[0] = window[0] + (output.detach().float() - value).abs()
            window[1] += 1
            window[2] = value

        return record

    def check(self) -> str | None:
        """Close the window: the warning line the first time a watched loss sat at its collapse value, else None."""
        message = None
        for name, window in self._windows.items():
            total, calls, value = window
            self._windows[name] = [0.0, 0, value]
            if self.warned or not calls:
                continue
            distance = float(total) / calls
            if distance <= self.tolerance * max(abs(value), 1.0):
                self.warned = True
                message = (f"warning: the loss {name} sits at its collapse value {value:.4f}, its value when every "
                           "embedding is the same; try a lower learning rate, milder views or a higher temperature")
        return message
