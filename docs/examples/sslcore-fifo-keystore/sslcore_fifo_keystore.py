"""A FIFO key store for sslcore: the complete example of a third-party plugin.

Installed (``pip install .``), it adds the key store ``fifo``; ``sslcore list key_store`` shows it with this
distribution as its provider, and a recipe selects it with::

    [key_store]
    kind = "fifo"
    size = 4096
    normalize = true
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

import sslcore
from sslcore import SslcoreError, distributed
from sslcore.components.key_stores.base import broadcast_from_first
from sslcore.keys import Keys


@attrs.frozen(kw_only=True)
class FifoConfig:
    """Options of the ``fifo`` key store (the keys of its ``[key_store]`` table).

    Attributes:
        size: how many past keys the store keeps; every rank keeps all of them.
        normalize: L2-normalise keys as they are stored, and start from random unit vectors instead of zeros.
    """

    size: int = attrs.field(default=4096, validator=attrs.validators.gt(0))
    normalize: bool = True


class FifoKeyStore(sslcore.KeyStore):
    """The ``size`` most recent keys of all ranks, as rows of ``queue``; the oldest are overwritten first.

    :meth:`read` compares each query with this step's key of its sample (the positive) and the stored keys (the
    negatives), as MoCo's queue; the engine calls :meth:`write` with this step's keys after the optimizer step.
    Replicated: :meth:`write` gathers the keys of every rank before storing them, so every rank holds the same
    queue and a checkpoint written by rank 0 restores every rank exactly.
    """

    sharding = "replicated"

    def __init__(self, dim: int, size: int, normalize: bool) -> None:
        super().__init__(dim)
        self.size = size
        self.normalize = normalize
        initial = F.normalize(torch.randn(size, dim), dim=1) if normalize else torch.zeros(size, dim)
        broadcast_from_first(initial)  # replicated from the first step on
        # Persistent buffers: the queue and its write position are saved with every checkpoint.
        self.register_buffer("queue", initial)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def read(self, keys, *, index=None, labels=None, positive_rows=None, exclude_rows=None) -> Keys:
        """Query i's positive is ``keys[i]`` (or ``keys[positive_rows[i]]``), this step's ``(batch, dim)`` keys;
        the bank is every stored key, detached and cloned (the write after this step must not alter a graph).
        The store keeps no indices or labels and none of this step's keys, so the other arguments do not apply."""
        self.check_keys(keys)
        positive = keys if positive_rows is None else keys[positive_rows]
        return Keys(positive=positive, bank=self.queue.detach().clone())

    @torch.no_grad()
    def write(self, keys, *, index=None, labels=None) -> None:
        """Store this step's ``(batch, dim)`` keys of every rank in place of the oldest ones."""
        self.check_keys(keys)
        keys = distributed.gather(keys)
        if self.normalize:
            keys = F.normalize(keys, dim=1)
        n = keys.shape[0]
        if n > self.size:
            raise SslcoreError(
                f"cannot store {n} keys in a fifo of size {self.size}", hint="make size at least the global batch"
            )
        slots = (self.ptr + torch.arange(n, device=self.ptr.device)) % self.size
        self.queue[slots] = keys.to(self.queue.dtype)
        self.ptr.copy_((self.ptr + n) % self.size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, size={self.size}, normalize={self.normalize}"


def build_fifo(config: FifoConfig, dim: int, num_samples: int) -> FifoKeyStore:
    """A FIFO of the most recent keys, replicated on every rank."""
    return FifoKeyStore(dim, config.size, config.normalize)


@sslcore.hookimpl
def sslcore_register_key_stores(registry):
    registry.add("fifo", build_fifo, FifoConfig)
