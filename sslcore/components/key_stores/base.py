"""The key store contract: where a method's keys (positives and negatives) live, and how ranks share them.

Every key store answers ``read(keys, ...) -> Keys`` (what this rank's queries are compared with) and takes
``write(keys, ...)`` (what it keeps for later steps), whatever its sharding. A method reads during its forward and
returns the write as a :class:`sslcore.method.KeyWrite`; the engine applies it after the optimizer step.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
from torch import nn

from sslcore import distributed
from sslcore.errors import SslcoreError
from sslcore.keys import Keys

Sharding = Literal["in_batch", "replicated", "sharded"]


class KeyStore(nn.Module, abc.ABC):
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

    ``read`` and ``write`` are collectives for every store that is not purely local: every rank calls them in the
    same order with the same number of rows.
    """

    sharding: ClassVar[Sharding]

    @abc.abstractmethod
    def read(
        self,
        keys: torch.Tensor,
        *,
        index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        positive_rows: torch.Tensor | None = None,
        exclude_rows: torch.Tensor | None = None,
    ) -> Keys:
        """The keys for this rank's queries.

        Args:
            keys: this step's key embeddings of this rank's samples ``(n, dim)`` (the key branch's output).
            index: the samples' dataset indices ``(n,)`` (memory banks address rows by them).
            labels: the samples' class labels ``(n,)`` (stores that keep or gather labels).
            positive_rows: for each query, the row of ``keys`` holding its positive (default: row i for query i).
            exclude_rows: for each query, the row of ``keys`` that is the query itself (queries and keys from one
                branch), to leave out of its comparisons; stores that keep no current keys ignore it.
        """

    def write(
        self, keys: torch.Tensor, *, index: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> None:
        """Keep ``keys`` (this rank's, detached) for later steps; called by the engine after the optimizer step.
        Stateless stores keep nothing."""

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
        self._built_for = (distributed.rank(), distributed.world_size())  # read each step without the device
        self.register_buffer("shard", torch.tensor(self._built_for))

    def _check_world(self) -> None:
        """Raise if the process group changed since this sharded store was built."""
        built_rank, built_world = self._built_for
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
    collective. On an accelerator the range check is an asynchronous device assertion: it never makes the step wait,
    and a bad index fails the next kernel launch instead of returning this error.
    """
    if indices.ndim != 1 or indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise SslcoreError(
            f"{owner} expects sample indices as a 1-D integer tensor, got {tuple(indices.shape)} {indices.dtype}"
        )
    if indices.numel() == 0:
        return
    in_range = ((indices >= 0) & (indices < num_samples)).all()
    message = f"{owner} got a sample index outside [0, {num_samples})"
    if indices.device.type != "cpu":
        torch._assert_async(in_range, message)  # the step never waits for the device to answer
        return
    try:
        torch._assert_async(in_range, message)
    except RuntimeError:
        bad = indices[(indices < 0) | (indices >= num_samples)][0]
        raise SslcoreError(f"{owner} got sample index {int(bad)} outside [0, {num_samples})") from None


def broadcast_from_first(tensor: torch.Tensor) -> torch.Tensor:
    """Overwrite ``tensor`` in place with rank 0's copy (no-op on one process).

    Works for CPU tensors under NCCL too (built components live on the CPU until the engine moves them).
    """
    if not distributed.is_distributed():
        return tensor
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else tensor.device
    moved = distributed.broadcast(tensor.to(device), src=0)
    return tensor.copy_(moved)
