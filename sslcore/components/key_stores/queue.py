"""A FIFO queue of past keys (MoCo v1/v2's dictionary, SwAV's per-rank queue of embeddings)."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F

from sslcore import distributed
from sslcore.components.key_stores.base import KeyStore, broadcast_from_first
from sslcore.errors import SslcoreError


@attrs.frozen(kw_only=True)
class QueueConfig:
    """A first-in first-out queue of the most recent keys.

    Attributes:
        size: number of keys K. In ``replicated`` mode every rank holds all K (MoCo's ``--moco-k``, 65536 for
            ImageNet); in ``sharded`` mode K is the total over ranks and each rank holds K / world_size of its
            own keys (SwAV's ``--queue_length``, e.g. 3840, split the same way).
        sharding: ``replicated`` gathers each step's keys from all ranks before enqueueing, so every rank holds
            the identical queue (MoCo ``_dequeue_and_enqueue``); ``sharded`` enqueues only this rank's keys
            (SwAV ``main_swav.py``).
        init: ``random`` fills the queue with random unit vectors (MoCo: ``normalize(randn(dim, K), dim=0)``);
            ``zeros`` starts empty (SwAV), for methods that wait until :attr:`Queue.filled` reaches capacity.
        store_labels: keep each key's class label (supervised contrastive with a queue); empty slots hold -1.
        store_indices: keep each key's dataset index (to exclude a sample's own key); empty slots hold -1.
    """

    size: int = attrs.field(default=65536, validator=attrs.validators.gt(0))
    sharding: Literal["replicated", "sharded"] = attrs.field(
        default="replicated", validator=attrs.validators.in_(("replicated", "sharded"))
    )
    init: Literal["random", "zeros"] = attrs.field(
        default="random", validator=attrs.validators.in_(("random", "zeros"))
    )
    store_labels: bool = False
    store_indices: bool = False


class Queue(KeyStore):
    """A ring buffer of ``capacity`` keys with a write pointer, like MoCo's ``queue`` / ``queue_ptr``.

    Keys are stored as rows, ``(capacity, dim)`` (MoCo stores the transpose). Unlike MoCo's
    ``assert K % batch_size == 0``, a batch that does not divide the queue wraps around the end, so the queue
    always holds the most recent ``capacity`` keys; with a dividing batch the layout equals MoCo's.
    SwAV shifts its queue instead of moving a pointer: the set of keys is the same and the order is irrelevant
    to the losses that read it.
    """

    sharding = "replicated"

    def __init__(
        self,
        dim: int,
        size: int,
        *,
        sharding: Literal["replicated", "sharded"] = "replicated",
        init: Literal["random", "zeros"] = "random",
        store_labels: bool = False,
        store_indices: bool = False,
    ) -> None:
        super().__init__(dim)
        self.sharding = sharding  # type: ignore[misc]  # chosen per instance by the config
        self.size = size
        world = distributed.world_size()
        if sharding == "sharded":
            if size % world:
                raise SslcoreError(
                    f"a sharded queue of size {size} cannot be split evenly over {world} processes",
                    hint=f"use a multiple of {world}",
                )
            self._register_shard()
        self.capacity = size // world if sharding == "sharded" else size
        if init == "random":
            queue = F.normalize(torch.randn(self.capacity, dim), dim=1)
            if sharding == "replicated":
                broadcast_from_first(queue)  # MoCo gets this from DDP's buffer broadcast
            self.register_buffer("queue", queue)
        else:
            self.register_buffer("queue", torch.zeros(self.capacity, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_labels", torch.full((self.capacity,), -1) if store_labels else None)
        self.register_buffer("queue_indices", torch.full((self.capacity,), -1) if store_indices else None)

    @property
    def filled(self) -> int:
        """How many slots on this rank hold an enqueued key (``capacity`` once the queue has wrapped)."""
        return int(self.count)

    def keys(self) -> torch.Tensor:
        """All ``(capacity, dim)`` keys, detached and cloned (the next enqueue must not change a graph's input)."""
        return self.queue.detach().clone()

    def labels(self) -> torch.Tensor:
        """The label of each slot (-1 where empty)."""
        if self.queue_labels is None:
            raise SslcoreError("this queue does not store labels", hint="set store_labels = true")
        return self.queue_labels.clone()

    def indices(self) -> torch.Tensor:
        """The dataset index of each slot (-1 where empty)."""
        if self.queue_indices is None:
            raise SslcoreError("this queue does not store sample indices", hint="set store_indices = true")
        return self.queue_indices.clone()

    @torch.no_grad()
    def enqueue(
        self, keys: torch.Tensor, labels: torch.Tensor | None = None, indices: torch.Tensor | None = None
    ) -> None:
        """Replace the oldest entries by ``keys`` (and their labels / indices when the queue stores them)."""
        self.check_keys(keys)
        for name, given, buffer in (("labels", labels, self.queue_labels), ("indices", indices, self.queue_indices)):
            if buffer is not None and given is None:
                raise SslcoreError(f"this queue stores {name} (store_{name} = true), so enqueue needs {name}=")
            if buffer is None and given is not None:
                raise SslcoreError(
                    f"enqueue got {name} but this queue does not store them", hint=f"set store_{name} = true"
                )
            if given is not None and given.shape != keys.shape[:1]:
                raise SslcoreError(f"enqueue got {name} of shape {tuple(given.shape)} for {keys.shape[0]} keys")
        device = self.queue.device
        keys = keys.to(device)
        labels = labels.to(device) if labels is not None else None
        indices = indices.to(device) if indices is not None else None
        if self.sharding == "sharded":
            self._check_world()
        else:
            keys = distributed.gather(keys)
            labels = distributed.gather(labels) if labels is not None else None
            indices = distributed.gather(indices) if indices is not None else None
        n = keys.shape[0]
        if n > self.capacity:
            raise SslcoreError(
                f"cannot enqueue {n} keys into a queue of {self.capacity}",
                hint="the queue must hold at least one global batch of keys; increase size",
            )
        slots = (self.ptr + torch.arange(n, device=self.ptr.device)) % self.capacity
        self.queue[slots] = keys.to(self.queue.dtype)
        if labels is not None:
            self.queue_labels[slots] = labels.to(self.queue_labels.dtype)
        if indices is not None:
            self.queue_indices[slots] = indices.to(self.queue_indices.dtype)
        self.ptr.copy_((self.ptr + n) % self.capacity)
        self.count.copy_(torch.clamp(self.count + n, max=self.capacity))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, size={self.size}, capacity={self.capacity}, sharding={self.sharding}"


def build_queue(config: QueueConfig, dim: int, num_samples: int) -> Queue:
    """A FIFO queue of past keys, replicated (MoCo) or per rank (SwAV)."""
    return Queue(
        dim,
        config.size,
        sharding=config.sharding,
        init=config.init,
        store_labels=config.store_labels,
        store_indices=config.store_indices,
    )
