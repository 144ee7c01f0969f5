"""Sample buffers (the ``sample_buffer`` kind): replay buffers of *images* from which SGLD chains start.

Persistent chains (Tieleman 2008; Du and Mordatch 2019, sec. 3.1, "sample replay buffer") keep the final states of
past Langevin chains: most new chains continue one of them, a few restart from noise. A buffer answers
``draw(like) -> (starts, slots)`` with starting images shaped like this step's batch, and keeps the chains' final
states with ``write(samples, index=slots)``. A method draws in its forward and returns the write as a
``sslcore.method.KeyWrite``; the engine applies it after the optimizer step, as for key stores.

Buffers are ``sharded``: each process holds ``size / world_size`` images of its own, draws its own chains and is
checkpointed per rank (``sslcore.engine.checkpoint``). The images live in a persistent buffer that is allocated at
the first draw, with the shape of the batch, and resized to the saved shape when a checkpoint is loaded.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn

from sslcore import distributed
from sslcore.components.sample_buffer_configs import ReplayConfig
from sslcore.errors import SslcoreError


class SampleBuffer(nn.Module, abc.ABC):
    """A buffer of images that SGLD chains start from and return to; one part per process (``sharding``)."""

    sharding: ClassVar[str] = "sharded"

    @abc.abstractmethod
    def draw(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Starting images for ``len(like)`` chains, shaped, typed and placed like ``like``, and the slots they
        came from (the slots :meth:`write` stores the chains' final states in)."""

    @abc.abstractmethod
    def write(self, samples: torch.Tensor, *, index: torch.Tensor | None = None, labels: Any = None) -> None:
        """Keep the final states ``samples`` of the chains drawn from slots ``index`` (called by the engine after
        the optimizer step; ``labels`` is unused by unconditional buffers)."""

    @abc.abstractmethod
    def contents(self) -> torch.Tensor:
        """The images this process holds, ``(n, C, H, W)`` (empty before the first draw)."""


class ReplayBuffer(SampleBuffer):
    """``size`` images per process, filled with U(low, high) noise at the first draw; a chain starts from a stored
    image drawn uniformly (with replacement), or with probability ``reinit`` from fresh noise, as ``sample_p_0``
    of Grathwohl et al.'s official ``train_wrn_ebm.py``. Every random number comes from torch's global generator,
    which the engine seeds per (seed, step, process), so a resumed run draws what an uninterrupted one would."""

    def __init__(self, size: int, *, reinit: float, low: float, high: float) -> None:
        super().__init__()
        self.size = size
        self.reinit = reinit
        self.low = low
        self.high = high
        self.register_buffer("images", torch.empty(0))

    def _noise(self, count: int, like: torch.Tensor) -> torch.Tensor:
        shape = (count, *like.shape[1:])
        return torch.empty(shape, dtype=like.dtype, device=like.device).uniform_(self.low, self.high)

    def draw(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.images.numel() == 0:
            self.images = self._noise(self.size, like)
        elif self.images.shape[1:] != like.shape[1:]:
            raise SslcoreError(
                f"the sample buffer holds images of shape {tuple(self.images.shape[1:])}, but this batch has "
                f"{tuple(like.shape[1:])}",
                hint="keep the image size of the run the buffer was made for, or start over (run.resume=never)",
            )
        count = like.shape[0]
        index = torch.randint(0, self.size, (count,), device=self.images.device)
        stored = self.images[index].to(like.dtype)
        fresh = self._noise(count, like)
        restart = torch.rand(count, device=like.device) < self.reinit
        return torch.where(restart.view(-1, *[1] * (like.dim() - 1)), fresh, stored), index

    @torch.no_grad()
    def write(self, samples: torch.Tensor, *, index: torch.Tensor | None = None, labels: Any = None) -> None:
        if index is None or samples.shape[1:] != self.images.shape[1:] or len(index) != len(samples):
            raise SslcoreError(
                f"a replay buffer write needs the slots of its draw and samples of shape (n, "
                f"{', '.join(map(str, self.images.shape[1:]))}), got {tuple(samples.shape)}"
            )
        self.images[index] = samples.to(self.images.dtype)

    def contents(self) -> torch.Tensor:
        return self.images

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        saved = state_dict.get(prefix + "images")
        if saved is not None and saved.shape != self.images.shape:
            self.images = torch.empty(saved.shape, dtype=self.images.dtype, device=self.images.device)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return f"size={self.size}, reinit={self.reinit}, noise=U({self.low}, {self.high})"


def build_replay(config: ReplayConfig) -> ReplayBuffer:
    """Images SGLD chains start from, size / world_size per process; a chain restarts from noise w.p. reinit."""
    world = distributed.world_size()
    if config.size % world:
        raise SslcoreError(
            f"size = {config.size} does not divide over {world} processes (each holds its own part)",
            hint=f"use a multiple of {world}",
        )
    return ReplayBuffer(config.size // world, reinit=config.reinit, low=config.low, high=config.high)


