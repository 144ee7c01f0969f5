"""Built-in key stores: in-batch keys, a FIFO queue and a per-sample memory bank (their options and registration:
:mod:`sslcore.components.key_store_configs`)."""

from __future__ import annotations

from sslcore.components.key_store_configs import InBatchConfig, MemoryBankConfig, QueueConfig
from sslcore.components.key_stores.base import KeyStore
from sslcore.components.key_stores.in_batch import InBatchKeys
from sslcore.components.key_stores.memory_bank import MemoryBank
from sslcore.components.key_stores.queue import Queue

__all__ = [
    "InBatchConfig",
    "InBatchKeys",
    "KeyStore",
    "MemoryBank",
    "MemoryBankConfig",
    "Queue",
    "QueueConfig",
]
