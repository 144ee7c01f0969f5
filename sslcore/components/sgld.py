"""Stochastic gradient Langevin dynamics on images (Welling and Teh 2011), as energy-based models sample.

Du and Mordatch 2019 (sec. 2.1, Eq. 3) and the hybrid models built on them run, for a fixed number of steps,

    x <- x + alpha * grad_x log p(x) + sigma * eps,    eps ~ N(0, I),

where log p(x) is known up to its normaliser (the negative energy). The step size and the noise are set apart, as
in practice (Grathwohl et al. 2020, sec. 4: alpha = 1, sigma = 0.01, not the sigma = sqrt(2 alpha) of the theory).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def sgld(
    log_density: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    *,
    steps: int,
    step_size: float,
    noise: float,
) -> torch.Tensor:
    """``steps`` Langevin steps from ``start`` (detached); returns the final states, detached.

    ``log_density(x)`` gives the unnormalised log-density of each sample, shape ``(n,)``; its gradient with respect
    to the images is taken of the sum, which is each sample's own gradient. Gradients are enabled inside (sampling
    may run under ``torch.no_grad``); no parameter gradient is accumulated. The noise is drawn from torch's global
    generator.
    """
    x = start.detach()
    with torch.enable_grad():
        for _ in range(steps):
            x = x.requires_grad_(True)
            (grad,) = torch.autograd.grad(log_density(x).sum(), [x])
            x = (x + step_size * grad + noise * torch.randn_like(x)).detach()
    return x
