"""Options of the Langevin sampler (:mod:`sslcore.components.sgld`), importable without torch so that recipes are
checked and listed without it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from attrs import validators as v

if TYPE_CHECKING:
    import torch


@attrs.frozen(kw_only=True)
class SgldConfig:
    """Options of the Langevin sampler: ``steps`` per chain and draw, ``step_size`` (alpha, the factor of the
    gradient of log p) and ``noise`` (sigma, the standard deviation of the Gaussian added at every step)."""

    steps: int = attrs.field(default=20, validator=v.ge(0))
    step_size: float = attrs.field(default=1.0, validator=v.gt(0))
    noise: float = attrs.field(default=0.01, validator=v.ge(0))

    def sample(self, log_density: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor) -> torch.Tensor:
        """:func:`sslcore.components.sgld.sgld` from ``start`` with these options."""
        from sslcore.components.sgld import sgld  # imported here: the options are read without torch

        return sgld(log_density, start, steps=self.steps, step_size=self.step_size, noise=self.noise)
