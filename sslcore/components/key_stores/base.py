"""The key store contract: where a method's keys (positives and negatives) live, and how ranks share them."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
from torch import nn

from sslcore import distributed
from sslcore.errors import SslcoreError

Sharding = Literal["in_batch", "replicated", "sharded"]


class KeyStore(nn.Module):
    """Base class of key stores.

    ``sharding`` states the distributed contract, which the engine relies on:

    - ``"in_batch"``: no state; the keys are the current global batch, gathered from every rank.
    - ``"replicated"``: every rank holds the identical state (updates are gathered first), so saving it from
      one rank and loading it on every rank is exact.
    - ``"sharded"``: each rank holds a different part of the state, so a checkpoint must save and restore it
      per rank (as SwAV saves ``queue{rank}.pth``), with the same number of processes. Sharded stores keep a
      ``shard`` buffer ``[rank, world_size]`` and refuse to load a shard saved by another rank or world size.

    All state lives in persistent buffers, so ``state_dict()`` / ``load_state_dict()`` round-trip it exactly.
    Keys are rows: a batch of keys is a ``(batch, dim)`` tensor.
    """

    sharding: ClassVar[Sharding]

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim <= 0:
            raise SslcoreError(f"{type(self).__name__} needs a positive key width, got dim={dim}")
        self.dim = dim

    def check_keys(self, keys: torch.Tensor, name: str = "keys") -> None:
        """Raise unless ``keys`` is a floating ``(batch, dim)`` tensor."""
        if keys.ndim != 2 or keys.shape[1] != self.dim or not keys.is_floating_point():
            raise SslcoreError(
                f"{type(self).__name__} expects {name} as a floating (batch, {self.dim}) tensor, "
                f"got {tuple(keys.shape)} {keys.dtype}"
            )

    def _register_shard(self) -> None:
        """Record which rank of how many processes owns this state (for :attr:`sharding` ``"sharded"``)."""
        self.register_buffer("shard", torch.tensor([distributed.rank(), distributed.world_size()]))

    def _check_world(self) -> None:
        """Raise if the process group changed since this sharded store was built."""
        built_rank, built_world = (int(v) for v in self.shard.tolist())
        now_rank, now_world = distributed.rank(), distributed.world_size()
        if (built_rank, built_world) != (now_rank, now_world):
            raise SslcoreError(
                f"{type(self).__name__} was sharded for rank {built_rank} of {built_world} processes but runs "
                f"as rank {now_rank} of {now_world}",
                hint="build sharded key stores after the process group is initialised, and resume with the "
                "same number of processes",
            )

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        saved = state_dict.get(prefix + "shard")
        own = getattr(self, "shard", None)
        if saved is not None and own is not None and not torch.equal(saved.cpu(), own.cpu()):
            if getattr(self, "defer_foreign_shard", False):
                return  # the engine loads this rank's own shard from its per-rank checkpoint file next
            raise SslcoreError(
                f"{type(self).__name__} state was saved by rank {int(saved[0])} of {int(saved[1])} processes and "
                f"cannot be loaded into rank {int(own[0])} of {int(own[1])}",
                hint="sharded key stores are checkpointed per rank; resume with the same number of processes",
            )
        super()._load_from_state_dict(state_dict, prefix, *args)


def check_indices(indices: torch.Tensor, num_samples: int, owner: str) -> None:
    """Raise unless ``indices`` is a 1-D integer tensor of dataset indices in ``[0, num_samples)``.

    Call it on gathered indices, so that every rank raises together instead of leaving the others in a
    collective.
    """
    if indices.ndim != 1 or indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise SslcoreError(
            f"{owner} expects sample indices as a 1-D integer tensor, got {tuple(indices.shape)} {indices.dtype}"
        )
    if bool(((indices < 0) | (indices >= num_samples)).any()):
        bad = indices[(indices < 0) | (indices >= num_samples)][0]
        raise SslcoreError(f"{owner} got sample index {int(bad)} outside [0, {num_samples})")


def broadcast_from_first(tensor: torch.Tensor) -> torch.Tensor:
    """Overwrite ``tensor`` in place with rank 0's copy (no-op on one process).

    Works for CPU tensors under NCCL too (built components live on the CPU until the engine moves them).
    """
    if not distributed.is_distributed():
        return tensor
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else tensor.device
    moved = distributed.broadcast(tensor.to(device), src=0)
    return tensor.copy_(moved)
