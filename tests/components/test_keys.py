"""The look-up protocol itself (sslcore/keys.py): what a Keys may hold, the errors a loss raises when it needs a
field the key store did not give, appending a second store's keys, and the logits every contrastive loss starts
from, each layout against a hand-written formula."""

from __future__ import annotations

import math

import pytest
import torch

from sslcore.errors import SslcoreError
from sslcore.keys import Keys, KeysMismatch, contrast_logits

INF = float("-inf")


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum()) / math.sqrt(float((a * a).sum()) * float((b * b).sum()))


def dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum())


# ---------------------------------------------------------------- validation


def test_keys_need_a_bank_or_a_positive_and_valid_shapes():
    q = torch.randn(3, 4)
    Keys(positive=q)
    Keys(bank=torch.randn(5, 4))
    Keys(bank=torch.randn(3, 5, 4), positive=q, population=10)
    with pytest.raises(ValueError, match="needs a bank, a positive, or both"):
        Keys()
    with pytest.raises(ValueError, match="needs a bank, a positive, or both"):
        Keys(labels=torch.zeros(3), query_labels=torch.zeros(3))
    with pytest.raises(ValueError, match="not both"):
        Keys(bank=torch.randn(5, 4), positive=q, positive_index=torch.arange(3))
    for shape in [(4,), (2, 3, 5, 4)]:
        with pytest.raises(ValueError, match=r"\(K, D\) or \(B, K, D\)"):
            Keys(bank=torch.randn(*shape))
    with pytest.raises(ValueError, match="population"):
        Keys(bank=torch.randn(3, 5, 4), positive=q, population=0)
    assert Keys(positive=q).grad is False


def test_require_and_forbid_raise_keys_mismatch_naming_the_loss_and_the_fields():
    keys = Keys(positive=torch.randn(3, 4))
    keys.require("byol", "positive")
    keys.forbid("byol", "bank", "labels")
    with pytest.raises(KeysMismatch, match=r"^loss 'supcon' needs keys with bank, labels, which this key store"):
        keys.require("supcon", "positive", "bank", "labels")
    with_bank = Keys(positive=torch.randn(3, 4), bank=torch.randn(5, 4))
    with pytest.raises(KeysMismatch, match=r"^loss 'negative_cosine' compares each query with its positive only, "
                                           r"but the key store gives bank \(negatives it would ignore\)"):
        with_bank.forbid("negative_cosine", "bank")
    assert issubclass(KeysMismatch, SslcoreError)  # a user error: one line, naming what does not fit


def test_cat_appends_the_second_bank_and_its_labels_and_keeps_the_positives():
    bank, extra = torch.randn(4, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float32)
    first = Keys(bank=bank, positive_index=torch.tensor([1, 0]), exclude_index=torch.tensor([0, 1]),
                 labels=torch.tensor([0, 1, 0, 1]), query_labels=torch.tensor([0, 1]), grad=True)
    both = first.cat(Keys(bank=extra, labels=torch.tensor([5, 6]), positive=torch.randn(2, 3)))
    assert torch.equal(both.bank, torch.cat([bank, extra.double()])) and both.bank.dtype == torch.float64
    assert both.labels.tolist() == [0, 1, 0, 1, 5, 6]
    assert both.positive is None and both.positive_index.tolist() == [1, 0] and both.exclude_index.tolist() == [0, 1]
    assert both.query_labels.tolist() == [0, 1] and both.grad is True
    assert first.bank.shape == (4, 3)  # frozen: cat returns new keys

    unlabelled = Keys(bank=torch.randn(4, 3), positive=torch.randn(2, 3))
    plain = unlabelled.cat(Keys(bank=torch.randn(1, 3)))
    assert plain.bank.shape == (5, 3) and plain.labels is None and torch.equal(plain.positive, unlabelled.positive)
    with pytest.raises(KeysMismatch, match="labelled and unlabelled"):
        first.cat(Keys(bank=extra))
    with pytest.raises(KeysMismatch, match=r"only shared \(K, D\) banks"):
        unlabelled.cat(Keys(bank=torch.randn(2, 4, 3)))
    with pytest.raises(KeysMismatch, match=r"only shared \(K, D\) banks"):
        unlabelled.cat(Keys(positive=torch.randn(2, 3)))


# ---------------------------------------------------------------- contrast_logits


def test_contrast_logits_with_a_positive_is_mocos_layout():
    torch.manual_seed(0)
    q, k, queue = torch.randn(3, 4), torch.randn(3, 4), torch.randn(5, 4)
    logits, target = contrast_logits(q, Keys(positive=k, bank=queue), loss="infonce")
    assert logits.shape == (3, 6) and target.tolist() == [0, 0, 0]
    for i in range(3):  # [l_pos, l_neg]: the positive in column 0, then the queue
        expected = [cos(q[i], k[i])] + [cos(q[i], queue[j]) for j in range(5)]
        assert logits[i].tolist() == pytest.approx(expected, abs=1e-6)

    raw, _ = contrast_logits(q, Keys(positive=k, bank=queue), loss="infonce", normalize=False)
    for i in range(3):
        assert raw[i].tolist() == pytest.approx([dot(q[i], k[i])] + [dot(q[i], queue[j]) for j in range(5)], rel=1e-5)

    # An excluded column of the bank is shifted by the positive's column.
    masked, _ = contrast_logits(q, Keys(positive=k, bank=queue, exclude_index=torch.tensor([0, 4, 2])), loss="x")
    for i, column in enumerate([1, 5, 3]):
        assert masked[i, column] == INF
        assert torch.isfinite(masked[i]).sum() == 5


def test_contrast_logits_with_positive_and_excluded_columns_is_simclrs_layout():
    torch.manual_seed(1)
    z1, z2 = torch.randn(2, 4), torch.randn(2, 4)
    query = bank = torch.cat([z1, z2])  # 2B anchors against the 2B views
    keys = Keys(bank=bank, positive_index=torch.tensor([2, 3, 0, 1]), exclude_index=torch.arange(4))
    logits, target = contrast_logits(query, keys, loss="ntxent")
    assert logits.shape == (4, 4) and target.tolist() == [2, 3, 0, 1]
    for i in range(4):
        for j in range(4):
            if i == j:  # SimCLR Eq. 1's 1[k != i]
                assert logits[i, j] == INF
            else:
                assert float(logits[i, j]) == pytest.approx(cos(query[i], bank[j]), abs=1e-6)
    # Against a larger global batch (this rank's rows at an offset), the indices are the bank's columns.
    other = torch.randn(4, 4)
    wide = Keys(bank=torch.cat([other, bank]), positive_index=torch.tensor([6, 7, 4, 5]),
                exclude_index=torch.arange(4) + 4)
    logits, target = contrast_logits(query, wide, loss="ntxent")
    assert target.tolist() == [6, 7, 4, 5]
    for i in range(4):
        assert logits[i, 4 + i] == INF and float(logits[i, 0]) == pytest.approx(cos(query[i], other[0]), abs=1e-6)


def test_contrast_logits_with_per_query_banks():
    torch.manual_seed(2)
    q, k, drawn = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 6, 4)
    logits, target = contrast_logits(q, Keys(positive=k, bank=drawn, population=100), loss="infonce")
    assert logits.shape == (3, 7) and target.tolist() == [0, 0, 0]
    for b in range(3):  # each query against its own draws (InstDisc's memory-bank negatives)
        expected = [cos(q[b], k[b])] + [cos(q[b], drawn[b, j]) for j in range(6)]
        assert logits[b].tolist() == pytest.approx(expected, abs=1e-6)
    indexed, target = contrast_logits(q, Keys(bank=drawn, positive_index=torch.tensor([5, 0, 2])), loss="infonce")
    assert target.tolist() == [5, 0, 2]
    for b in range(3):
        assert indexed[b].tolist() == pytest.approx([cos(q[b], drawn[b, j]) for j in range(6)], abs=1e-6)


def test_contrast_logits_errors():
    q = torch.randn(3, 4)
    with pytest.raises(KeysMismatch, match="loss 'infonce' needs keys with bank"):
        contrast_logits(q, Keys(positive=q), loss="infonce")
    with pytest.raises(KeysMismatch, match="loss 'infonce' needs each query's positive"):
        contrast_logits(q, Keys(bank=torch.randn(5, 4)), loss="infonce")
    with pytest.raises(ValueError, match=r"keys of shape \(5, 3\) do not fit queries of shape \(3, 4\)"):
        contrast_logits(q, Keys(positive=q, bank=torch.randn(5, 3)), loss="infonce")
    with pytest.raises(ValueError, match=r"keys of shape \(2, 5, 4\) do not fit"):
        contrast_logits(q, Keys(positive=q, bank=torch.randn(2, 5, 4)), loss="infonce")
    with pytest.raises(ValueError, match=r"positive keys \(2, 4\) do not fit queries \(3, 4\)"):
        contrast_logits(q, Keys(positive=q[:2], bank=torch.randn(5, 4)), loss="infonce")
    with pytest.raises(ValueError, match=r"query must have shape \(B, D\)"):
        contrast_logits(q[0], Keys(positive=q, bank=torch.randn(5, 4)), loss="infonce")


def test_an_empty_bank_is_an_error_not_a_loss_of_zero():
    query = torch.randn(4, 8)
    keys = Keys(positive=torch.randn(4, 8), bank=torch.empty(0, 8))  # a zero-initialised queue before any write
    with pytest.raises(SslcoreError, match="bank is empty"):
        contrast_logits(query, keys, loss="infonce")
