"""The look-up protocol: what a key store answers to a read, and the logits every contrastive loss starts from.

A method turns this rank's views into ``B`` queries ``(B, D)``; a key store's ``read`` answers with :class:`Keys`,
the keys each query is compared with; a loss is ``loss(query, keys)``. Every field states a fact a loss may
need; a loss that needs a fact the store did not give raises :class:`KeysMismatch`, which the method turns
into a one-line error naming the key store and the loss.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from sslcore.errors import SslcoreError


class KeysMismatch(SslcoreError):
    """A loss cannot use the keys a key store gave (e.g. NCE without a memory bank's noise distribution)."""


@attrs.frozen(kw_only=True, eq=False)
class Keys:
    """The keys this rank's ``B`` queries are compared with.

    Attributes:
        bank: keys shared by every query ``(K, D)`` (a queue, the gathered global batch), or drawn per query
            ``(B, K, D)`` (memory-bank negatives); None for a store that gives positives only.
        positive: each query's own positive key ``(B, D)``, outside ``bank`` (queue: this step's keys;
            memory bank: the sample's stored entry; no store: the target branch's output).
        positive_index: ``(B,)`` the column of ``bank`` that holds each query's positive (in-batch keys).
        exclude_index: ``(B,)`` a column of ``bank`` each query is not compared with: the query itself, when
            queries and keys come from the same branch (SimCLR's ``1[k != i]``).
        labels: ``(K,)`` class label of each key of ``bank``; ``query_labels``: ``(B,)`` the queries' labels.
        population: the number of entries the per-query ``bank`` is drawn from, uniformly (NCE's noise
            distribution ``P_n = 1 / population``).
        grad: whether gradients flow into ``bank`` and ``positive`` (in-batch keys gathered with gradient).
    """

    bank: torch.Tensor | None = None
    positive: torch.Tensor | None = None
    positive_index: torch.Tensor | None = None
    exclude_index: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    query_labels: torch.Tensor | None = None
    population: int | None = None
    grad: bool = False

    def __attrs_post_init__(self) -> None:
        if self.positive is not None and self.positive_index is not None:
            raise ValueError("Keys takes a positive key or the positive's index in the bank, not both")
        if self.bank is not None and self.bank.ndim not in (2, 3):
            raise ValueError(f"Keys.bank must be (K, D) or (B, K, D), got {tuple(self.bank.shape)}")
        if self.bank is None and self.positive is None:
            raise ValueError("Keys needs a bank, a positive, or both")
        if self.population is not None and self.population < 1:
            raise ValueError(f"Keys.population (the number of entries the bank is drawn from) must be >= 1, "
                             f"got {self.population}")

    def require(self, loss: str, *fields: str) -> None:
        """Raise :class:`KeysMismatch` unless every named field is set (``loss`` names the caller)."""
        missing = [name for name in fields if getattr(self, name) is None]
        if missing:
            raise KeysMismatch(f"loss '{loss}' needs keys with {', '.join(missing)}, which this key store does not give")

    def forbid(self, loss: str, *fields: str) -> None:
        """Raise :class:`KeysMismatch` if a named field is set (a loss that would silently ignore it)."""
        present = [name for name in fields if getattr(self, name) is not None]
        if present:
            raise KeysMismatch(
                f"loss '{loss}' compares each query with its positive only, but the key store gives "
                f"{', '.join(present)} (negatives it would ignore)"
            )

    def cat(self, extra: Keys) -> Keys:
        """These keys with ``extra``'s bank (and labels) appended as further keys; positives stay these."""
        if self.bank is None or extra.bank is None or self.bank.ndim != 2 or extra.bank.ndim != 2:
            raise KeysMismatch("only shared (K, D) banks can be concatenated")
        if (self.labels is None) != (extra.labels is None):
            raise KeysMismatch("cannot concatenate labelled and unlabelled keys")
        labels = None if self.labels is None or extra.labels is None else torch.cat([self.labels, extra.labels])
        return attrs.evolve(self, bank=torch.cat([self.bank, extra.bank.to(self.bank.dtype)]), labels=labels)


def contrast_logits(
    query: torch.Tensor, keys: Keys, *, loss: str, normalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarities of each query to its positive and the bank, and the column of the positive.

    With ``keys.positive``: ``[q . k+, q . bank]`` with the positive in column 0 (MoCo's ``cat([l_pos,
    l_neg])``); with ``keys.positive_index``: ``q . bank`` and that index (in-batch keys). The excluded column
    (the query itself) is set to ``-inf``. Returns ``(logits (B, 1+K) or (B, K), target (B,))``, not divided by
    any temperature.
    """
    keys.require(loss, "bank")
    if keys.positive is None and keys.positive_index is None:
        raise KeysMismatch(f"loss '{loss}' needs each query's positive, which this key store does not give")
    if query.ndim != 2:
        raise ValueError(f"query must have shape (B, D), got {tuple(query.shape)}")
    bank, positive = keys.bank, keys.positive
    assert bank is not None
    if bank.shape[-2] == 0:
        raise SslcoreError(
            f"loss '{loss}' got no keys to contrast with: the key store's bank is empty",
            hint="a queue with init = \"zeros\" holds no key before its first write; use init = \"random\"",
        )
    if bank.shape[-1] != query.shape[1] or (bank.ndim == 3 and bank.shape[0] != query.shape[0]):
        raise ValueError(f"keys of shape {tuple(bank.shape)} do not fit queries of shape {tuple(query.shape)}")
    if normalize:
        query, bank = F.normalize(query, dim=-1), F.normalize(bank, dim=-1)
        positive = F.normalize(positive, dim=-1) if positive is not None else None
    similarity = query @ bank.t() if bank.ndim == 2 else torch.einsum("bd,bkd->bk", query, bank)
    rows = torch.arange(query.shape[0], device=query.device)
    if positive is not None:
        if positive.shape != query.shape:
            raise ValueError(f"positive keys {tuple(positive.shape)} do not fit queries {tuple(query.shape)}")
        logits = torch.cat([(query * positive).sum(dim=1, keepdim=True), similarity], dim=1)
        target = torch.zeros_like(rows)
        shift = 1
    else:
        assert keys.positive_index is not None
        logits, target, shift = similarity, keys.positive_index.to(query.device), 0
    if keys.exclude_index is not None:
        logits = logits.index_put((rows, keys.exclude_index.to(query.device) + shift), logits.new_tensor(float("-inf")))
    return logits, target
