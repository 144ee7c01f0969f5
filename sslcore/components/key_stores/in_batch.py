"""In-batch keys: the negatives are the current global batch (InvaSpread, SimCLR, MoCo v3)."""

from __future__ import annotations

import torch

from sslcore import distributed
from sslcore.components.key_store_configs import InBatchConfig
from sslcore.components.key_stores.base import KeyStore
from sslcore.keys import Keys


class InBatchKeys(KeyStore):
    """Stateless: ``read`` concatenates the keys of all ranks; ``write`` keeps nothing.

    With gradients (``stop_gradient=False``) the all-gather backward sums the upstream gradient over ranks
    (``sslcore.distributed.gather_with_grad``), so N processes with batch B train exactly like one process with
    batch N*B under data-parallel gradient averaging. Every rank must pass the same batch size.
    """

    sharding = "in_batch"

    def __init__(self, dim: int, *, stop_gradient: bool = False) -> None:
        super().__init__(dim)
        self.stop_gradient = stop_gradient

    def read(
        self,
        keys: torch.Tensor,
        *,
        index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        positive_rows: torch.Tensor | None = None,
        exclude_rows: torch.Tensor | None = None,
    ) -> Keys:
        """The ``(world*n, D)`` global batch of keys as the shared bank; query i's positive is this rank's row
        ``positive_rows[i]`` (default i), at ``rank * n + positive_rows[i]`` of the bank. With ``labels``, the
        bank's labels are gathered too and the queries' labels are this rank's."""
        self.check_keys(keys)
        # detach: on one process gather is the identity, and this rank's own keys must be constants too
        bank = distributed.gather(keys.detach()) if self.stop_gradient else distributed.gather_with_grad(keys)
        offset = distributed.rank() * keys.shape[0]
        rows = torch.arange(keys.shape[0], device=keys.device) if positive_rows is None else positive_rows
        return Keys(
            bank=bank,
            positive_index=rows + offset,
            exclude_index=None if exclude_rows is None else exclude_rows + offset,
            labels=None if labels is None else distributed.gather(labels),
            query_labels=labels,
            grad=not self.stop_gradient,
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, stop_gradient={self.stop_gradient}"


def build_in_batch(config: InBatchConfig, dim: int, num_samples: int) -> InBatchKeys:
    """Negatives are the current global batch, gathered from every rank (SimCLR, InvaSpread, MoCo v3)."""
    return InBatchKeys(dim, stop_gradient=config.stop_gradient)
