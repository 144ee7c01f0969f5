"""In-batch keys: the negatives are the current global batch (InvaSpread, SimCLR, MoCo v3)."""

from __future__ import annotations

import attrs
import torch

from sslcore import distributed
from sslcore.components.key_stores.base import KeyStore


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


class InBatchKeys(KeyStore):
    """Stateless: ``gather`` concatenates the keys of all ranks.

    With gradients (``stop_gradient=False``) the all-gather backward sums the upstream gradient over ranks
    (``sslcore.distributed.gather_with_grad``), so N processes with batch B train exactly like one process with
    batch N*B under data-parallel gradient averaging. Every rank must pass the same batch size.
    """

    sharding = "in_batch"

    def __init__(self, dim: int, *, stop_gradient: bool = False) -> None:
        super().__init__(dim)
        self.stop_gradient = stop_gradient

    def gather(self, keys: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Return ``(all_keys, offset)``: the ``(world*B, D)`` global batch and where this rank's rows start.

        Row ``offset + i`` of ``all_keys`` is ``keys[i]``: the positive of this rank's query ``i``.
        """
        self.check_keys(keys)
        all_keys = distributed.gather(keys) if self.stop_gradient else distributed.gather_with_grad(keys)
        return all_keys, distributed.rank() * keys.shape[0]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, stop_gradient={self.stop_gradient}"


def build_in_batch(config: InBatchConfig, dim: int, num_samples: int) -> InBatchKeys:
    """Negatives are the current global batch, gathered from every rank (SimCLR, InvaSpread, MoCo v3)."""
    return InBatchKeys(dim, stop_gradient=config.stop_gradient)
