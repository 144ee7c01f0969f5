"""The built-in sample buffer's options (``replay``) and its registration; the buffer is built by
:mod:`sslcore.components.sample_buffers`, imported only when a run builds one."""

from __future__ import annotations

import attrs
from attrs import validators as v

from sslcore import hookimpl


@attrs.frozen(kw_only=True)
class ReplayConfig:
    """A replay buffer of images (Grathwohl et al. 2020: ``--buffer_size 10000 --reinit_freq 0.05``, images ~ U(-1, 1)).

    Attributes:
        size: images over all processes; each holds ``size / world_size``.
        reinit: probability that a chain starts from fresh noise instead of a stored image.
        low, high: the uniform noise that fills the buffer and restarts chains, in the units of the normalised
            images (U(-1, 1) for images normalised with mean 0.5, std 0.5).
    """

    size: int = attrs.field(default=10000, validator=v.gt(0))
    reinit: float = attrs.field(default=0.05, validator=[v.ge(0), v.le(1)])
    low: float = -1.0
    high: float = 1.0

    def __attrs_post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low}, high={self.high}")


@hookimpl
def sslcore_register_sample_buffers(registry):
    registry.add("replay", "sslcore.components.sample_buffers:build_replay", ReplayConfig)
