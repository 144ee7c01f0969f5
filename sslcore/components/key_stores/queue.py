"""A FIFO queue of past keys (MoCo v1/v2's dictionary, SwAV's per-rank queue of embeddings)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from sslcore import distributed
from sslcore.components.key_store_configs import QueueConfig
from sslcore.components.key_stores.base import KeyStore, broadcast_from_first
from sslcore.errors import SslcoreError
from sslcore.keys import Keys


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
        self._filled: int | None = 0  # count on the host (None: read it once, after a checkpoint was loaded)
        self.random_init = init == "random"
        self.register_buffer("queue_labels", torch.full((self.capacity,), -1) if store_labels else None)

    @property
    def filled(self) -> int:
        """How many slots on this rank hold an enqueued key (``capacity`` once the queue has wrapped); kept on the
        host, so that a method deciding by it does not wait for the device."""
        if self._filled is None:
            self._filled = int(self.count)
        return self._filled

    def read(
        self,
        keys: torch.Tensor,
        *,
        index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        positive_rows: torch.Tensor | None = None,
        exclude_rows: torch.Tensor | None = None,
    ) -> Keys:
        """``keys`` (this step's, row i for query i, or ``positive_rows``) are the positives; the bank is a
        detached copy of the stored keys (the write after this step must not change a graph's input).

        The bank holds the slots that hold a key: all of them for ``init = "random"`` (MoCo's random initial
        keys are negatives from step 0), the written ones for ``init = "zeros"``, and for a labelled queue the
        ones that hold a label (random initial keys have none).
        """
        self.check_keys(keys)
        valid = self._valid_slots()
        return Keys(
            positive=keys if positive_rows is None else keys[positive_rows],
            bank=self.queue.detach()[valid].clone() if valid is not None else self.queue.detach().clone(),
            labels=None if self.queue_labels is None else self.queue_labels[valid].clone(),
            query_labels=labels,
        )

    def _valid_slots(self) -> torch.Tensor | None:
        """A mask of the slots that hold a key, or None when every slot does."""
        if self.queue_labels is not None:
            return self.queue_labels >= 0
        if self.random_init or self.filled == self.capacity:
            return None
        return torch.arange(self.capacity, device=self.queue.device) < self.count

    @torch.no_grad()
    def write(
        self, keys: torch.Tensor, *, index: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> None:
        """Replace the oldest entries by ``keys`` (and their labels when the queue stores them). A replicated
        queue gathers every rank's keys first (MoCo's ``_dequeue_and_enqueue``); a sharded one keeps its own."""
        self.check_keys(keys)
        if self.queue_labels is not None and labels is None:
            raise SslcoreError("this queue stores labels (store_labels = true), so its keys need labels")
        if labels is not None and labels.shape != keys.shape[:1]:
            raise SslcoreError(f"a queue write got labels of shape {tuple(labels.shape)} for {keys.shape[0]} keys")
        device = self.queue.device
        keys = keys.to(device)
        labels = labels.to(device) if labels is not None and self.queue_labels is not None else None
        if self.sharding == "sharded":
            self._check_world()
        else:
            keys = distributed.gather(keys)
            labels = distributed.gather(labels) if labels is not None else None
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
        self.ptr.copy_((self.ptr + n) % self.capacity)
        self.count.copy_(torch.clamp(self.count + n, max=self.capacity))
        self._filled = min(self.filled + n, self.capacity)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._filled = None  # the loaded count

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
    )
