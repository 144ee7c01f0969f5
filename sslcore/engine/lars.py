"""LARS as the official self-supervised code bases write it: trust ratio ``eta ||w|| / ||g + lambda w||``.

facebookresearch/moco-v3 ``moco/optimizer.py`` (``LARS.step``), google-research/simclr ``lars_optimizer.py``
(``grad += weight_decay * param``, then ``eeta * w_norm / g_norm``) and BYOL's ``byol/utils/optimizers.py``
take the norm of the update after weight decay. timm's ``Lars`` (the LARS paper and apex LARC) divides by
``||g|| + lambda ||w||`` instead, which is larger whenever ``g`` and ``w`` are not aligned; sslcore uses timm's
for ``trust_ratio = "sum_of_norms"`` and this class for ``"update_norm"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class UpdateNormLars(torch.optim.Optimizer):
    """``mu = m mu + q (g + lambda w)``, ``w -= lr mu`` (Nesterov: ``w -= lr (m mu + q (g + lambda w))``), where
    ``q = eta ||w|| / ||g + lambda w||`` for parameters of groups with ``lars_adapt`` (1 where either norm is 0)
    and 1 for the others (biases and normalisation parameters when excluded), as moco-v3's ``LARS.step``."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, nesterov: bool = False,
                 trust_coeff: float = 0.001) -> None:
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "trust_coeff": trust_coeff,
                    "weight_decay": 0.0, "lars_adapt": True}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad.add(p, alpha=group["weight_decay"])
                if group["lars_adapt"]:
                    param_norm, update_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    one = torch.ones_like(param_norm)
                    ratio = torch.where((param_norm > 0) & (update_norm > 0),
                                        group["trust_coeff"] * param_norm / update_norm, one)
                    update = update.mul(ratio)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                step = update.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer
                p.add_(step, alpha=-group["lr"])
        return loss
