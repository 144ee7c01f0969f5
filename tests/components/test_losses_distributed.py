"""On 2 gloo processes, in-batch losses with gathered keys equal one process holding the global batch.

Each loss is called as its method calls it, ``loss(query, keys)`` with the keys of the ``in_batch`` key store
(``InBatchKeys.read``), the same code on one process and on each rank.

Gradient relation checked here: rank r's loss L_r is the mean over its B local anchors, and the gathered keys
come from ``gather_with_grad`` (the in-batch store without ``stop_gradient``), whose backward sums the upstream
gradient over ranks. So the gradient that
reaches rank r's inputs is d(L_0 + L_1)/dx_r. One process with the 2B batch computes L = (L_0 + L_1) / 2,
hence  rank gradient = world_size * single-process gradient  for the rows of that rank. DDP then averages the
parameter gradients over ranks, which divides by world_size again: exactly the single-process gradient.
"""

from __future__ import annotations

import pytest
import torch

from sslcore.components.key_stores import InBatchKeys
from sslcore.components.losses import MoCoV3ContrastiveLoss, NTXentLoss, SupConLoss, sinkhorn_knopp
from sslcore.distributed import rank, world_size
from sslcore.keys import Keys
from sslcore.testing import run_distributed

WORLD = 2
BATCH = 3  # per rank
TOL = dict(rtol=1e-5, atol=1e-6)


def make_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    total = WORLD * BATCH
    return {
        "z1": randn(total, 4),
        "z2": randn(total, 4),
        "q": randn(total, 4),
        "k": randn(total, 4),
        "features": randn(total, 2, 4),
        "labels": torch.tensor([0, 1, 2, 1, 0, 1]),
        "queue": randn(5, 4),
        "queue_labels": torch.tensor([1, 2, 3, 0, 0]),
        "scores": torch.nn.functional.normalize(randn(total, 5), dim=1).float(),
    }


def ntxent(z1, z2):
    """SimCLR's one call: this process's 2B anchors against the in-batch keys of both views of every rank."""
    batch = z1.shape[0]
    rows = torch.arange(batch)
    z = torch.cat([z1, z2])
    keys = InBatchKeys(z.shape[1]).read(z, positive_rows=torch.cat([rows + batch, rows]),
                                        exclude_rows=torch.arange(2 * batch))
    return NTXentLoss(temperature=0.5)(z, keys)


def mocov3(q, k):
    """ctr(q, k) against the keys of every rank, gathered with gradient (so both inputs get one)."""
    return MoCoV3ContrastiveLoss(temperature=0.2)(q, InBatchKeys(k.shape[1]).read(k))


def supcon(features, labels, queue, queue_labels):
    """SupCon's one call: every view of this process's samples (view-major) against the in-batch keys of every
    rank with their labels, followed by a queue's labelled keys."""
    views = features.shape[1]
    anchors = features.transpose(0, 1).reshape(-1, features.shape[2])
    keys = InBatchKeys(anchors.shape[1]).read(anchors, labels=labels.repeat(views),
                                              exclude_rows=torch.arange(anchors.shape[0]))
    loss = SupConLoss(temperature=0.3, base_temperature=0.07)
    return loss(anchors, keys.cat(Keys(bank=queue, labels=queue_labels)))


def _worker(rank_: int, world: int, inputs: dict[str, torch.Tensor]) -> dict:
    """One rank: its slice of the global batch, keys gathered with gradient, loss and input gradients."""
    rows = slice(rank() * BATCH, (rank() + 1) * BATCH)
    local = {name: inputs[name][rows].clone().requires_grad_(True) for name in ("z1", "z2", "q", "k", "features")}
    out: dict = {"world_size": world_size(), "rank": rank()}

    loss = ntxent(local["z1"], local["z2"])
    loss.backward()
    out["ntxent"] = (loss.detach(), local["z1"].grad, local["z2"].grad)

    loss = mocov3(local["q"], local["k"])
    loss.backward()
    out["mocov3"] = (loss.detach(), local["q"].grad, local["k"].grad)

    labels = inputs["labels"][rows]
    loss = supcon(local["features"], labels, inputs["queue"], inputs["queue_labels"])
    loss.backward()
    out["supcon"] = (loss.detach(), local["features"].grad)

    out["sinkhorn"] = sinkhorn_knopp(inputs["scores"][rows], epsilon=0.05, iterations=3)
    return out


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return make_inputs()


@pytest.fixture(scope="module")
def ranks(inputs) -> list[dict]:
    return run_distributed(_worker, inputs, world_size=WORLD)


def single_process(fn, tensors: list[torch.Tensor], *args) -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves = [t.clone().requires_grad_(True) for t in tensors]
    loss = fn(*leaves, *args)
    loss.backward()
    return loss.detach(), [t.grad for t in leaves]


def assert_equivalent(ranks: list[dict], name: str, global_loss, global_grads) -> None:
    losses = torch.stack([r[name][0] for r in ranks])
    assert not torch.allclose(losses[0], losses[1])  # the ranks really saw different samples
    torch.testing.assert_close(losses.mean(), global_loss, **TOL)
    for i, global_grad in enumerate(global_grads):
        rank_grads = torch.cat([r[name][1 + i] for r in ranks])
        torch.testing.assert_close(rank_grads, WORLD * global_grad, **TOL)


@pytest.mark.distributed
def test_the_workers_ran_on_two_ranks(ranks):
    assert [(r["world_size"], r["rank"]) for r in ranks] == [(WORLD, 0), (WORLD, 1)]


@pytest.mark.distributed
def test_ntxent_two_ranks_equal_one_process_with_the_global_batch(ranks, inputs):
    assert ranks[0]["world_size"] == WORLD
    global_loss, grads = single_process(ntxent, [inputs["z1"], inputs["z2"]])
    assert_equivalent(ranks, "ntxent", global_loss, grads)


@pytest.mark.distributed
def test_mocov3_two_ranks_equal_one_process_with_the_global_batch(ranks, inputs):
    assert ranks[0]["world_size"] == WORLD
    global_loss, grads = single_process(mocov3, [inputs["q"], inputs["k"]])
    assert_equivalent(ranks, "mocov3", global_loss, grads)


@pytest.mark.distributed
def test_supcon_two_ranks_equal_one_process_with_the_global_batch(ranks, inputs):
    assert ranks[0]["world_size"] == WORLD
    global_loss, grads = single_process(supcon, [inputs["features"]], inputs["labels"], inputs["queue"],
                                        inputs["queue_labels"])
    assert_equivalent(ranks, "supcon", global_loss, grads)


@pytest.mark.distributed
def test_distributed_sinkhorn_equals_one_process_on_the_concatenated_batch(ranks, inputs):
    assert ranks[0]["world_size"] == WORLD
    single = sinkhorn_knopp(inputs["scores"], epsilon=0.05, iterations=3)
    distributed = torch.cat([r["sinkhorn"] for r in ranks])
    torch.testing.assert_close(distributed, single, rtol=1e-5, atol=1e-7)
    # Not the same as each rank running Sinkhorn on its own half: the marginals are global.
    assert not torch.allclose(sinkhorn_knopp(inputs["scores"][:BATCH]), single[:BATCH], atol=1e-4)
