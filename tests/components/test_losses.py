"""Each loss against an independent implementation of its paper's formula (explicit loops), values and gradients.

Every loss but soft_cross_entropy is ``loss(query, keys)``: the tests build the keys as the key store of its method
gives them (``InBatchKeys.read`` on one process, or the same layout written out for a rank of a larger batch).
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
import torch

from sslcore.components.key_stores import InBatchKeys
from sslcore.components.loss_configs import sslcore_register_losses
from sslcore.components.losses import (
    InfoNCEConfig,
    MoCoV3ContrastiveConfig,
    NCEConfig,
    NCELoss,
    NTXentConfig,
    NTXentLoss,
    SupConConfig,
    SupConLoss,
    sinkhorn_knopp,
    soft_cross_entropy,
)
from sslcore.keys import Keys, KeysMismatch
from sslcore.registry import Registry

TOL = dict(rtol=1e-5, atol=1e-6)


def leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def value_and_grads(fn, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    inputs = leaves(*tensors)
    value = fn(*inputs)
    value.backward()
    return value.detach(), [t.grad for t in inputs]


def assert_matches_reference(impl, reference, *tensors: torch.Tensor) -> None:
    """Same value and same gradient w.r.t. every input, to 1e-5."""
    value, grads = value_and_grads(impl, list(tensors))
    ref_value, ref_grads = value_and_grads(reference, list(tensors))
    torch.testing.assert_close(value, ref_value, **TOL)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, **TOL)


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt((v * v).sum())


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum()


@pytest.fixture
def registry() -> Registry:
    registry = Registry("loss")
    sslcore_register_losses(registry)
    return registry


def build(registry: Registry, name: str, **options):
    entry = registry.get(name)
    return entry.build(entry.config(**options))


# ---------------------------------------------------------------- the keys each method's key store gives


def simclr_call(loss, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """SimCLR's one call: the 2B anchors against the in-batch keys of both views, each anchor's positive its
    other view and the anchor itself left out."""
    batch = z1.shape[0]
    rows = torch.arange(batch)
    z = torch.cat([z1, z2])
    keys = InBatchKeys(z.shape[1]).read(z, positive_rows=torch.cat([rows + batch, rows]),
                                        exclude_rows=torch.arange(2 * batch))
    return loss(z, keys)


def view_major(features: torch.Tensor) -> torch.Tensor:
    """``(B, V, D)`` -> ``(V*B, D)``: all samples' first view, then all samples' second view, ..."""
    return features.transpose(0, 1).reshape(-1, features.shape[2])


def supcon_call(loss, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SupCon's one call on one process: every view of every sample, view-major, against the in-batch keys with
    their labels, each anchor's own column left out."""
    anchors = view_major(features)
    keys = InBatchKeys(anchors.shape[1]).read(anchors, labels=labels.repeat(features.shape[1]),
                                              exclude_rows=torch.arange(anchors.shape[0]))
    return loss(anchors, keys)


def supcon_rank_keys(all_features: torch.Tensor, all_labels: torch.Tensor, rank: int, batch: int) -> Keys:
    """The in-batch keys rank ``rank`` of ``len(all_features) // batch`` ranks reads: every rank's view-major rows,
    in rank order, its own anchors' columns left out."""
    views = all_features.shape[1]
    shards = range(0, all_features.shape[0], batch)
    bank = torch.cat([view_major(all_features[s : s + batch]) for s in shards])
    labels = torch.cat([all_labels[s : s + batch].repeat(views) for s in shards])
    local = all_labels[rank * batch : (rank + 1) * batch].repeat(views)
    return Keys(bank=bank, labels=labels, query_labels=local,
                exclude_index=rank * views * batch + torch.arange(views * batch), grad=True)


# ---------------------------------------------------------------- references written from the papers


def infonce_reference(q, k, negatives, t):
    """MoCo Eq. 1: L_q = -log exp(q.k+/t) / (exp(q.k+/t) + sum_i exp(q.k_i/t))."""
    losses = []
    for i in range(q.shape[0]):
        qi = unit(q[i])
        negs = negatives if negatives.ndim == 2 else negatives[i]
        pos = torch.exp(dot(qi, unit(k[i])) / t)
        den = pos + sum(torch.exp(dot(qi, unit(n)) / t) for n in negs)
        losses.append(-torch.log(pos / den))
    return torch.stack(losses).mean()


def ntxent_reference(z1, z2, t, anchors_of):
    """SimCLR's loss as the official objective.py computes it over the interleaved 2N vectors (view 1 of sample k
    at 2k, view 2 at 2k+1): ``loss_a + loss_b``, the means over view-1 and view-2 anchors of the samples
    ``anchors_of`` of Eq. 1's terms (twice the paper's mean over 2N)."""
    z = [unit(v) for pair in zip(z1, z2) for v in pair]

    def ell(i, j):
        den = sum(torch.exp(dot(z[i], z[k]) / t) for k in range(len(z)) if k != i)
        return -torch.log(torch.exp(dot(z[i], z[j]) / t) / den)

    loss_a = torch.stack([ell(2 * s, 2 * s + 1) for s in anchors_of]).mean()
    loss_b = torch.stack([ell(2 * s + 1, 2 * s) for s in anchors_of]).mean()
    return loss_a + loss_b


def mocov3_reference(q, k_all, t, offset):
    losses = []
    for i in range(q.shape[0]):
        qi = unit(q[i])
        den = sum(torch.exp(dot(qi, unit(k)) / t) for k in k_all)
        losses.append(-torch.log(torch.exp(dot(qi, unit(k_all[offset + i])) / t) / den))
    return torch.stack(losses).mean() * 2 * t


def supcon_reference(features, labels, all_features, all_labels, offset, t, base_t, queue=None, queue_labels=None):
    """Khosla et al. Eq. 2 (L^sup_out), loops over anchors; an anchor without positives contributes 0."""
    contrast = [(unit(all_features[j, w]), int(all_labels[j]), (j, w)) for j in range(len(all_features))
                for w in range(all_features.shape[1])]
    if queue is not None:
        contrast += [(unit(queue[m]), int(queue_labels[m]), ("queue", m)) for m in range(len(queue))]
    losses = []
    for b in range(features.shape[0]):
        for v in range(features.shape[1]):
            z = unit(features[b, v])
            others = [(c, label) for c, label, key in contrast if key != (offset + b, v)]
            den = sum(torch.exp(dot(z, c) / t) for c, _ in others)
            terms = [torch.log(torch.exp(dot(z, c) / t) / den) for c, label in others if label == int(labels[b])]
            if terms:
                losses.append(-(t / base_t) * torch.stack(terms).mean())
            else:
                losses.append(torch.zeros((), dtype=features.dtype))
    return torch.stack(losses).mean()


def nce_reference(f, pos, negatives, n, t, z):
    """InstDisc Eq. 5-6 with P(i|v) = exp(v_i.v/t)/Z, P_n = 1/n, m noise samples per datum, eps as official."""
    m = negatives.shape[-2]
    eps = 1e-7
    total = 0.0
    for b in range(f.shape[0]):
        fb = unit(f[b])
        p = torch.exp(dot(unit(pos[b]), fb) / t) / z
        total = total + torch.log(p / (p + m / n + eps))
        negs = negatives if negatives.ndim == 2 else negatives[b]
        for neg in negs:
            p = torch.exp(dot(unit(neg), fb) / t) / z
            total = total + torch.log((m / n) / (p + m / n + eps))
    return -total / f.shape[0]


def sinkhorn_reference(scores: np.ndarray, eps: float, iterations: int) -> np.ndarray:
    """SwAV Alg. 1 (appendix pseudo-code): Q = diag(u) exp(C^T Z / eps) diag(v) on the polytope with
    marginals r = 1/K (prototypes) and c = 1/B (samples); returns each sample's assignment (columns to 1)."""
    q = np.exp(scores.astype(np.float64) / eps).T
    q /= q.sum()
    k, b = q.shape
    r, c = np.full(k, 1 / k), np.full(b, 1 / b)
    for _ in range(iterations):
        u = q.sum(axis=1)
        q *= (r / u)[:, None]
        q *= (c / q.sum(axis=0))[None, :]
    return (q / q.sum(axis=0, keepdims=True)).T


# ---------------------------------------------------------------- formula tests


def test_infonce_matches_moco_equation_with_a_queue_and_with_per_query_negatives(registry):
    torch.manual_seed(0)
    q, k = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
    queue = torch.randn(6, 8, dtype=torch.float64)
    loss = build(registry, "infonce", temperature=0.2)

    def impl(query, positive, negatives):
        return loss(query, Keys(positive=positive, bank=negatives))

    assert_matches_reference(impl, lambda *x: infonce_reference(*x, 0.2), q, k, queue)
    per_query = torch.randn(4, 5, 8, dtype=torch.float64)
    assert_matches_reference(impl, lambda *x: infonce_reference(*x, 0.2), q, k, per_query)


def test_infonce_default_temperature_is_moco_v1():
    assert InfoNCEConfig().temperature == 0.07


def test_ntxent_matches_simclr_equation(registry):
    torch.manual_seed(1)
    z1, z2 = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    loss = build(registry, "ntxent", temperature=0.5)
    assert_matches_reference(
        lambda a, b: simclr_call(loss, a, b), lambda a, b: ntxent_reference(a, b, 0.5, range(5)), z1, z2
    )


def test_ntxent_local_anchors_against_a_global_batch_use_the_ranks_columns():
    torch.manual_seed(2)
    all_z1, all_z2 = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    loss = NTXentLoss(temperature=0.3)
    # Rank 1 of 3 ranks with 2 samples each: the in-batch store gathers each rank's cat(z1, z2) in rank order,
    # so this rank's rows start at column 4; the positive of anchor i is its other view, i itself is left out.
    bank = torch.cat([torch.cat([all_z1[s : s + 2], all_z2[s : s + 2]]) for s in (0, 2, 4)])
    keys = Keys(bank=bank, positive_index=4 + torch.tensor([2, 3, 0, 1]), exclude_index=4 + torch.arange(4))
    value = loss(torch.cat([all_z1[2:4], all_z2[2:4]]), keys)
    torch.testing.assert_close(value, ntxent_reference(all_z1, all_z2, 0.3, [2, 3]), **TOL)


def test_ntxent_default_temperature_is_the_official_one():
    assert NTXentConfig().temperature == 0.1


def test_mocov3_matches_algorithm_1(registry):
    torch.manual_seed(3)
    q, k_all = torch.randn(3, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    loss = build(registry, "mocov3_contrastive", temperature=0.2)
    assert_matches_reference(
        lambda a, b: loss(a, Keys(bank=b, positive_index=torch.arange(3) + 2)),
        lambda a, b: mocov3_reference(a, b, 0.2, 2),
        q,
        k_all,
    )
    assert MoCoV3ContrastiveConfig().temperature == 1.0


def test_negative_cosine_and_normalized_mse_match_simsiam_and_byol(registry):
    torch.manual_seed(4)
    p, z = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)

    def neg_cos(a, b):
        return -torch.stack([dot(unit(a[i]), unit(b[i])) for i in range(len(a))]).mean()

    def norm_mse(a, b):
        return torch.stack([((unit(a[i]) - unit(b[i])) ** 2).sum() for i in range(len(a))]).mean()

    negative_cosine, normalized_mse = build(registry, "negative_cosine"), build(registry, "normalized_mse")
    assert_matches_reference(lambda a, b: negative_cosine(a, Keys(positive=b)), neg_cos, p, z)
    assert_matches_reference(lambda a, b: normalized_mse(a, Keys(positive=b)), norm_mse, p, z)


def test_supcon_matches_equation_2(registry):
    torch.manual_seed(5)
    features = torch.randn(6, 2, 5, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    loss = build(registry, "supcon", temperature=0.2, base_temperature=0.1)
    assert_matches_reference(
        lambda f: supcon_call(loss, f, labels), lambda f: supcon_reference(f, labels, f, labels, 0, 0.2, 0.1), features
    )


def test_supcon_local_anchors_global_contrast_and_queue():
    torch.manual_seed(6)
    all_features = torch.randn(6, 2, 4, dtype=torch.float64)
    all_labels = torch.tensor([0, 1, 2, 0, 1, 2])
    queue, queue_labels = torch.randn(5, 4, dtype=torch.float64), torch.tensor([2, 2, 0, 3, 1])
    loss = SupConLoss(temperature=0.5, base_temperature=0.5)

    def impl(local, everything, keys):
        # Rank 1 of 2 with 3 samples each: the in-batch keys of the global batch, then the queue's labelled keys.
        in_batch = supcon_rank_keys(everything, all_labels, rank=1, batch=3)
        return loss(view_major(local), in_batch.cat(Keys(bank=keys, labels=queue_labels)))

    def reference(local, everything, keys):
        return supcon_reference(local, all_labels[3:], everything, all_labels, 3, 0.5, 0.5, keys, queue_labels)

    assert_matches_reference(impl, reference, all_features[3:], all_features, queue)


def test_supcon_anchor_without_positive_counts_as_zero_instead_of_nan():
    torch.manual_seed(7)
    features = torch.randn(4, 1, 3, dtype=torch.float64)  # one view: sample 0 and 3 have unique labels
    labels = torch.tensor([0, 1, 1, 2])
    loss = SupConLoss(temperature=0.1, base_temperature=0.1)
    assert_matches_reference(
        lambda f: supcon_call(loss, f, labels), lambda f: supcon_reference(f, labels, f, labels, 0, 0.1, 0.1), features
    )
    value = supcon_call(loss, features, labels)
    assert torch.isfinite(value)
    # Only the two anchors of label 1 contribute; the others count in the mean with 0.
    pair_keys = Keys(bank=features[:, 0], labels=labels, query_labels=labels[1:3], exclude_index=torch.tensor([1, 2]))
    pair = loss(features[1:3, 0], pair_keys)
    torch.testing.assert_close(value, pair / 2, **TOL)


def test_supcon_defaults_follow_the_official_cifar_recipe():
    config = SupConConfig()
    assert (config.temperature, config.base_temperature) == (0.1, 0.07)


def test_nce_matches_instdisc_equations_and_fixes_z_after_the_first_batch(registry):
    torch.manual_seed(8)
    n, t = 1000, 0.1
    f, pos = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    negatives = torch.randn(4, 5, 6, dtype=torch.float64)
    loss = build(registry, "nce", temperature=t, normalize=True).double()
    assert float(loss.normalizer) == 0.0

    # The official estimate: Z = mean over the batch's positives and negatives of exp(v.f/t), times n.
    scores = [math.exp(float(dot(unit(v), unit(f[b]))) / t) for b in range(4) for v in [pos[b], *negatives[b]]]
    z = sum(scores) / len(scores) * n
    assert_matches_reference(
        lambda a, b, c: loss(a, Keys(positive=b, bank=c, population=n)),
        lambda *x: nce_reference(*x, n, t, z),
        f,
        pos,
        negatives,
    )
    assert float(loss.normalizer) == pytest.approx(z, rel=1e-12)

    # Z stays fixed on later batches, and it travels with the state dict.
    shared = torch.randn(7, 6, dtype=torch.float64)
    restored = NCELoss(temperature=t, normalize=True).double()
    restored.load_state_dict(loss.state_dict())
    assert "normalizer" in loss.state_dict()
    assert_matches_reference(
        lambda a, b, c: restored(a, Keys(positive=b, bank=c, population=n)),
        lambda *x: nce_reference(*x, n, t, z),
        f * 2 + 1,
        pos,
        shared,
    )
    assert float(restored.normalizer) == pytest.approx(z, rel=1e-12)
    assert NCEConfig().temperature == 0.07
    assert NCEConfig().normalize is False  # official NCEAverage uses bank entries as stored


def test_soft_cross_entropy_matches_swav_and_dino(registry):
    torch.manual_seed(9)
    targets = torch.softmax(torch.randn(4, 7, dtype=torch.float64), dim=1)
    logits = torch.randn(4, 7, dtype=torch.float64)

    def reference(q, x):
        total = 0.0
        for b in range(4):
            den = sum(torch.exp(x[b, j] / 0.1) for j in range(7))
            total = total - sum(q[b, k] * torch.log(torch.exp(x[b, k] / 0.1) / den) for k in range(7))
        return total / 4

    assert_matches_reference(build(registry, "soft_cross_entropy"), reference, targets, logits)
    assert_matches_reference(lambda q, x: soft_cross_entropy(q, x, 0.1), reference, targets, logits)


def test_sinkhorn_matches_the_paper_algorithm_and_its_marginals():
    torch.manual_seed(10)
    scores = torch.nn.functional.normalize(torch.randn(12, 5), dim=1)  # cosine scores, as SwAV's
    codes = sinkhorn_knopp(scores, epsilon=0.05, iterations=3)
    assert codes.shape == (12, 5) and codes.dtype == torch.float32
    np.testing.assert_allclose(codes.numpy(), sinkhorn_reference(scores.numpy(), 0.05, 3), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(12))  # each sample: a distribution
    # Converged, every prototype receives an equal share B/K of the samples (equipartition).
    converged = sinkhorn_knopp(scores, epsilon=0.5, iterations=200)
    torch.testing.assert_close(converged.sum(dim=0), torch.full((5,), 12 / 5), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(codes.sum(dim=0), torch.full((5,), 12 / 5), atol=1e-3)  # 3 iterations: not yet


def test_sinkhorn_works_in_float32_for_half_inputs():
    scores = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    torch.testing.assert_close(sinkhorn_knopp(scores.half()), sinkhorn_knopp(scores.half().float()))


# ---------------------------------------------------------------- registration, configs, input checks


def test_every_loss_is_registered_and_builds_from_its_default_config(registry):
    assert registry.names() == sorted(
        ["infonce", "ntxent", "mocov3_contrastive", "negative_cosine", "normalized_mse", "supcon", "nce",
         "invaspread", "soft_cross_entropy"]
    )
    for entry in registry:
        assert attrs.has(entry.config) and entry.description
        assert isinstance(entry.build(entry.config()), torch.nn.Module)


@pytest.mark.parametrize(
    "name", ["infonce", "ntxent", "mocov3_contrastive", "supcon", "nce", "invaspread", "soft_cross_entropy"]
)
def test_temperature_must_be_positive(registry, name):
    with pytest.raises(ValueError, match="temperature"):
        registry.get(name).config(temperature=0.0)


def test_supcon_base_temperature_must_be_positive():
    with pytest.raises(ValueError, match="base_temperature"):
        SupConConfig(base_temperature=-1.0)


def test_wrong_shapes_are_clear_errors(registry):
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"keys of shape \(2, 5, 3\) do not fit queries of shape \(4, 3\)"):
        build(registry, "infonce")(x, Keys(positive=x, bank=torch.randn(2, 5, 3)))
    with pytest.raises(ValueError, match=r"negatives must have shape \(m, D\) or \(B, m, D\)"):
        NCELoss()(x, Keys(positive=x, bank=torch.randn(2, 5, 3), population=10))
    labelled = dict(bank=x, labels=torch.zeros(4), query_labels=torch.zeros(4))
    with pytest.raises(ValueError, match=r"query must have shape \(n, D\)"):
        SupConLoss()(x[:, None], Keys(**labelled))
    with pytest.raises(ValueError, match=r"one label per query and per key, got \(3,\) for 4 queries"):
        SupConLoss()(x, Keys(**{**labelled, "query_labels": torch.zeros(3)}))
    with pytest.raises(ValueError, match="same shape"):
        build(registry, "negative_cosine")(x, Keys(positive=x[:2]))
    with pytest.raises(ValueError, match="population"):  # NCE's memory-bank size n
        NCELoss()(x, Keys(positive=x, bank=x, population=0))
    with pytest.raises(ValueError, match="same shape"):
        soft_cross_entropy(torch.rand(4, 2), x, 0.1)
    with pytest.raises(ValueError, match="iterations"):
        sinkhorn_knopp(x, iterations=0)


def test_a_loss_given_keys_it_cannot_use_says_what_is_missing(registry):
    """The one-line KeysMismatch a method turns into "[loss] ... and [key_store] ... do not fit"."""
    x = torch.randn(4, 3)
    in_batch = InBatchKeys(3).read(x)
    with pytest.raises(KeysMismatch, match="loss 'infonce' needs keys with bank"):
        build(registry, "infonce")(x, Keys(positive=x))  # no negatives: BYOL's keys
    with pytest.raises(KeysMismatch, match="loss 'ntxent' needs each query's positive"):
        NTXentLoss()(x, Keys(bank=x))
    with pytest.raises(KeysMismatch, match="loss 'mocov3_contrastive' needs keys with bank"):
        build(registry, "mocov3_contrastive")(x, Keys(positive=x))
    with pytest.raises(KeysMismatch, match="loss 'supcon' needs keys with labels, query_labels"):
        SupConLoss()(x, in_batch)  # in-batch keys read without labels
    with pytest.raises(KeysMismatch, match="loss 'nce' needs keys with population"):
        NCELoss()(x, Keys(positive=x, bank=torch.randn(4, 5, 3)))  # per-query draws, but no noise distribution
    with pytest.raises(KeysMismatch, match="loss 'nce' needs keys with positive"):
        NCELoss()(x, in_batch)
    for name in ("negative_cosine", "normalized_mse"):
        with pytest.raises(KeysMismatch, match=f"loss '{name}' compares each query with its positive only"):
            build(registry, name)(x, Keys(positive=x, bank=torch.randn(6, 3)))  # a queue's negatives
        with pytest.raises(KeysMismatch, match=f"loss '{name}' needs keys with positive"):
            build(registry, name)(x, in_batch)
