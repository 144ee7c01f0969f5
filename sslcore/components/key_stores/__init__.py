"""Built-in key stores: in-batch keys, a FIFO queue and a per-sample memory bank."""

from __future__ import annotations

from sslcore import hookimpl
from sslcore.components.key_stores.base import KeyStore
from sslcore.components.key_stores.in_batch import InBatchConfig, InBatchKeys, build_in_batch
from sslcore.components.key_stores.memory_bank import MemoryBank, MemoryBankConfig, build_memory_bank
from sslcore.components.key_stores.queue import Queue, QueueConfig, build_queue

__all__ = [
    "InBatchConfig",
    "InBatchKeys",
    "KeyStore",
    "MemoryBank",
    "MemoryBankConfig",
    "Queue",
    "QueueConfig",
]


@hookimpl
def sslcore_register_key_stores(registry):
    registry.add("in_batch", build_in_batch, InBatchConfig)
    registry.add("queue", build_queue, QueueConfig)
    registry.add("memory_bank", build_memory_bank, MemoryBankConfig)
