"""The built-in key stores' options (``in_batch``, ``queue``, ``memory_bank``) and their registration; the stores
are built by :mod:`sslcore.components.key_stores`, imported only when a run builds one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs

from sslcore import hookimpl
from sslcore.errors import SslcoreError

if TYPE_CHECKING:
    from sslcore.engine.settings import RunSettings


@attrs.frozen(kw_only=True)
class InBatchConfig:
    """Keys gathered from the global batch of every step.

    Attributes:
        stop_gradient: gather without gradient (all keys, this rank's own included, are constants). Use it
            when the keys come from a target network anyway (MoCo v3: ``concat_all_gather`` of momentum keys);
            leave it off when keys and queries share the graph (SimCLR, InvaSpread), so gradients flow through
            the gathered keys of every rank.
    """

    stop_gradient: bool = False


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
    """

    size: int = attrs.field(default=65536, validator=attrs.validators.gt(0))
    sharding: Literal["replicated", "sharded"] = attrs.field(
        default="replicated", validator=attrs.validators.in_(("replicated", "sharded"))
    )
    init: Literal["random", "zeros"] = attrs.field(
        default="random", validator=attrs.validators.in_(("random", "zeros"))
    )
    store_labels: bool = False

    def check_run(self, run: RunSettings) -> None:
        """Every step enqueues at least one global batch of keys (replicated: every process's; sharded: 1/N of the
        batch into 1/N of the queue), so a smaller queue fails at the first step: reject it with the recipe."""
        if self.size < run.batch_size:
            raise SslcoreError(
                f"size = {self.size} cannot hold one global batch of keys ([run] batch_size = {run.batch_size}), "
                "which every step enqueues",
                hint=f"set size to at least {run.batch_size} (twice that for a method that enqueues two views per "
                "step, e.g. symmetric MoCo), or lower [run] batch_size",
            )


@attrs.frozen(kw_only=True)
class MemoryBankConfig:
    """One feature vector per training sample, sharded over processes.

    Attributes:
        momentum: weight of the stored vector in the update ``v <- normalize(m*v + (1-m)*f)``
            (InstDisc Sec. 3.3 / lemniscate ``--nce-m``: 0.5).
        dtype: storage type of the bank; ``float16`` halves its memory (ImageNet: 1.28M x 128). Arithmetic is
            done in float32 either way.
        negatives: ``m``, the entries :meth:`MemoryBank.read` draws per query as negatives, uniformly with
            replacement (InstDisc sec. 3.2 / lemniscate ``--nce-k``: 4096).
    """

    momentum: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
    dtype: Literal["float32", "float16"] = attrs.field(
        default="float32", validator=attrs.validators.in_(("float32", "float16"))
    )
    negatives: int = attrs.field(default=4096, validator=attrs.validators.gt(0))


@hookimpl
def sslcore_register_key_stores(registry):
    registry.add("in_batch", "sslcore.components.key_stores.in_batch:build_in_batch", InBatchConfig)
    registry.add("queue", "sslcore.components.key_stores.queue:build_queue", QueueConfig)
    registry.add("memory_bank", "sslcore.components.key_stores.memory_bank:build_memory_bank", MemoryBankConfig)
