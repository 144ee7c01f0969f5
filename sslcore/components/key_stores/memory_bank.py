"""A memory bank: one slowly updated feature per training sample (InstDisc, Wu et al. 2018).

Follows the official lemniscate.pytorch ``lib/NCEAverage.py`` / ``lib/LinearAverage.py``: uniform init in
[-stdv, stdv] with stdv = 1/sqrt(dim/3), proximal update ``v <- normalize(m*v + (1-m)*f)`` with m = 0.5
(``--nce-m``), and negatives drawn uniformly with replacement per query (``AliasMethod`` over uniform unigrams).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from sslcore import distributed
from sslcore.components.key_store_configs import MemoryBankConfig
from sslcore.components.key_stores.base import KeyStore, broadcast_from_first, check_indices
from sslcore.errors import SslcoreError
from sslcore.keys import Keys

_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_INIT_CHUNK_ROWS = 1 << 16  # rows drawn at a time at init: bounds the transient memory, fixed for reproducibility


class MemoryBank(KeyStore):
    """``num_samples`` vectors of width ``dim``, addressed by dataset index.

    Sharding: sample ``i`` lives on rank ``i % world_size`` in local row ``i // world_size`` (strided, so
    ranks differ by at most one row for any ``num_samples``), so memory per process falls as processes are
    added. ``lookup``, ``update`` and ``sample`` take this rank's global indices and are collectives: every
    rank must call them in the same order with the same batch size. Indices are all-gathered, each rank fills
    the rows it owns into a zero buffer and an all-reduce assembles them, which is exact (one non-zero term
    per entry). N processes with batch B produce the same bank, look-ups and samples as one process with
    batch N*B (same seed), because the initial values and the random negatives are drawn on rank 0 alone.
    """

    sharding = "sharded"

    def __init__(
        self,
        dim: int,
        num_samples: int,
        *,
        momentum: float = 0.5,
        dtype: Literal["float32", "float16"] = "float32",
        negatives: int = 4096,
    ) -> None:
        super().__init__(dim)
        if num_samples <= 0:
            raise SslcoreError(f"a memory bank needs the dataset size, got num_samples={num_samples}")
        if not 0.0 <= momentum < 1.0:
            raise SslcoreError(f"memory bank momentum must lie in [0, 1), got {momentum}")
        self.num_samples = num_samples
        self.momentum = momentum
        self.negatives = negatives
        self._register_shard()
        world, rank = distributed.world_size(), distributed.rank()
        seed = broadcast_from_first(torch.randint(2**62, (1,)))
        self.register_buffer("bank", _initial_rows(num_samples, dim, rank, world, int(seed), _DTYPES[dtype]))

    def _fetch(self, indices: torch.Tensor) -> torch.Tensor:
        """Rows of global ``indices`` (the same on every rank), in storage dtype."""
        world, rank = distributed.world_size(), distributed.rank()
        if world == 1:
            return self.bank[indices]
        owned = indices % world == rank
        if self.bank.shape[0] == 0:  # fewer samples than processes: this rank owns none
            rows = torch.zeros(indices.shape[0], self.dim, dtype=self.bank.dtype, device=self.bank.device)
        else:  # fixed-size gather and mask (a boolean index would wait for the device to count the rows)
            rows = self.bank[torch.where(owned, indices // world, 0)].masked_fill_(~owned.unsqueeze(1), 0)
        return distributed.all_reduce_sum(rows)

    def _gather_indices(self, indices: torch.Tensor) -> torch.Tensor:
        self._check_world()
        all_indices = distributed.gather(indices.to(self.bank.device))
        check_indices(all_indices, self.num_samples, "memory bank")
        return all_indices

    def read(
        self,
        keys: torch.Tensor,
        *,
        index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        positive_rows: torch.Tensor | None = None,
        exclude_rows: torch.Tensor | None = None,
    ) -> Keys:
        """Each query's positive is its sample's stored entry (read before this step's write, as lemniscate's
        ``NCEAverage.forward``); the bank is ``negatives`` entries drawn per query from all ``num_samples``."""
        if index is None:
            raise SslcoreError("a memory bank addresses its entries by dataset index: read it with index=")
        self.check_keys(keys)
        positive = self.lookup(index)
        negatives, _ = self.sample(keys.shape[0], self.negatives)
        return Keys(positive=positive, bank=negatives, population=self.num_samples)

    def write(
        self, keys: torch.Tensor, *, index: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> None:
        """``v[i] <- normalize(m * v[i] + (1 - m) * f)`` for the samples ``index`` (see :meth:`update`)."""
        if index is None:
            raise SslcoreError("a memory bank addresses its entries by dataset index: write it with index=")
        self.update(index, keys)

    @torch.no_grad()
    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The stored vectors of this rank's samples ``indices`` (B,), as float32 ``(B, dim)``."""
        all_indices = self._gather_indices(indices)
        start = distributed.rank() * indices.shape[0]
        return self._fetch(all_indices)[start : start + indices.shape[0]].float()

    @torch.no_grad()
    def update(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        """``v[i] <- normalize(m * v[i] + (1 - m) * f)`` for each of this rank's samples (lemniscate backward).

        ``features`` are expected L2-normalised, as in InstDisc. When an index occurs several times in the
        global batch (e.g. a padded distributed sampler), its last occurrence wins, deterministically.
        """
        self.check_keys(features, "features")
        if features.shape[0] != indices.shape[0]:
            raise SslcoreError(f"memory bank update got {features.shape[0]} features for {indices.shape[0]} indices")
        all_indices = self._gather_indices(indices)
        all_features = distributed.gather(features.detach().float())
        if self.bank.shape[0] == 0:  # fewer samples than processes: this rank owns none
            return
        world, rank = distributed.world_size(), distributed.rank()
        owned = all_indices % world == rank
        rows = torch.where(owned, all_indices // world, 0)
        mixed = self.bank[rows].float().mul_(self.momentum).add_(all_features, alpha=1.0 - self.momentum)
        mixed = F.normalize(mixed, dim=1)
        # Fixed-size write, so the step never waits for the device: every position writes, the ones that must not
        # (rows of other ranks, earlier occurrences of an index) write the first real write's row and value again.
        written = owned & _last_occurrence(all_indices)
        any_written = written.any()
        first = torch.argmax(written.to(torch.uint8))  # 0 when nothing is written here
        spare_row = torch.where(any_written, rows[first], 0)  # row 0 keeps its value when this rank writes nothing
        spare_value = torch.where(any_written, mixed[first], self.bank[0].float())
        target = torch.where(written, rows, spare_row)
        value = torch.where(written.unsqueeze(1), mixed, spare_value)
        self.bank.index_put_((target,), value.to(self.bank.dtype))

    @torch.no_grad()
    def sample(self, batch: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``m`` negatives per query uniformly with replacement from the whole dataset.

        Returns ``(vectors (batch, m, dim) float32, indices (batch, m))`` for this rank's ``batch`` queries.
        As in lemniscate, a query's own sample may be drawn; the positive is read with :meth:`lookup`.
        """
        if batch <= 0 or m <= 0:
            raise SslcoreError(f"memory bank sample needs positive batch and m, got batch={batch}, m={m}")
        self._check_world()
        world, rank = distributed.world_size(), distributed.rank()
        drawn = torch.randint(self.num_samples, (world * batch, m), device=self.bank.device)
        drawn = broadcast_from_first(drawn)
        mine = drawn[rank * batch : (rank + 1) * batch]
        if world == 1:
            return self.bank[mine].float(), mine
        vectors = self._fetch(drawn.reshape(-1)).view(world * batch, m, self.dim)
        return vectors[rank * batch : (rank + 1) * batch].float(), mine

    def extra_repr(self) -> str:
        return (
            f"num_samples={self.num_samples}, dim={self.dim}, momentum={self.momentum}, "
            f"dtype={self.bank.dtype}, local_rows={self.bank.shape[0]}"
        )


def _last_occurrence(indices: torch.Tensor) -> torch.Tensor:
    """For each position, whether no later position holds the same index (a stable sort keeps positions in order)."""
    ordered, permutation = torch.sort(indices, stable=True)
    last_in_order = torch.ones_like(ordered, dtype=torch.bool)
    last_in_order[:-1] = ordered[1:] != ordered[:-1]
    return torch.empty_like(last_in_order).scatter_(0, permutation, last_in_order)


def _initial_rows(num_samples: int, dim: int, rank: int, world: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """This rank's rows of ``U(-stdv, stdv)^(num_samples x dim)``, identical for any world size.

    The full bank is drawn chunk by chunk from one seeded generator (so no process ever holds it whole) and
    each rank keeps the rows ``i % world == rank``.
    """
    stdv = 1.0 / math.sqrt(dim / 3)
    generator = torch.Generator().manual_seed(seed)
    local = torch.empty(len(range(rank, num_samples, world)), dim, dtype=dtype)
    for start in range(0, num_samples, _INIT_CHUNK_ROWS):
        chunk = torch.rand(min(_INIT_CHUNK_ROWS, num_samples - start), dim, generator=generator)
        first = start + (rank - start) % world  # first global row of this chunk owned by this rank
        mine = chunk[first - start :: world]
        local[first // world : first // world + mine.shape[0]] = mine.mul_(2 * stdv).sub_(stdv).to(dtype)
    return local


def build_memory_bank(config: MemoryBankConfig, dim: int, num_samples: int) -> MemoryBank:
    """One momentum-updated vector per training sample, sharded by index over processes (InstDisc)."""
    return MemoryBank(dim, num_samples, momentum=config.momentum, dtype=config.dtype, negatives=config.negatives)
