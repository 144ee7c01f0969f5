"""Key stores on 2 gloo processes equal one process fed the global batch (one run_distributed call)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sslcore import distributed
from sslcore.components.key_stores import InBatchKeys, MemoryBank, Queue
from sslcore.testing import run_distributed

B, D, STEPS = 2, 4, 3  # per-rank batch, key width, enqueue / update steps
QUEUE_SIZE = 10  # 2 steps of 4 keys leave 2 initial rows; the 3rd step wraps around
BANK_SAMPLES = 7  # not divisible by 2 ranks


def _in_batch_loss(weight: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor, store: InBatchKeys):
    """InfoNCE of this rank's queries against the gathered global batch of keys (positive at its column)."""
    q = F.normalize(queries @ weight, dim=1)
    k = F.normalize(keys @ weight, dim=1)
    read = store.read(k)
    logits = q @ read.bank.T / 0.1
    return F.cross_entropy(logits, read.positive_index), read.bank


def _data():
    generator = torch.Generator().manual_seed(1)
    return {
        "weight": torch.randn(D, D, generator=generator),
        "queries": torch.randn(2 * B, D, generator=generator),
        "keys": torch.randn(2 * B, D, generator=generator),
        "queue_keys": torch.randn(STEPS, 2 * B, D, generator=generator),
        "labels": torch.randint(5, (STEPS, 2 * B), generator=generator),
        # an index twice in one global batch: across ranks (step 2), within a rank (step 3)
        "bank_indices": torch.tensor([[0, 6, 3, 2], [5, 3, 4, 3], [2, 2, 6, 0]]),
        "bank_features": F.normalize(torch.randn(STEPS, 2 * B, D, generator=generator), dim=2),
        "bank_read_indices": torch.tensor([6, 1, 3, 1]),
    }


def _worker(rank: int, world: int) -> dict:
    data = _data()
    mine = slice(rank * B, (rank + 1) * B)
    out: dict = {"world": distributed.world_size()}

    weight = data["weight"].clone().requires_grad_()
    loss, _ = _in_batch_loss(weight, data["queries"][mine], data["keys"][mine], InBatchKeys(D))
    loss.backward()
    out["in_batch_grad"] = distributed.all_reduce_mean(weight.grad)  # what DDP does to parameter gradients
    k = data["keys"][mine].clone().requires_grad_()
    read = InBatchKeys(D, stop_gradient=True).read(k, labels=data["labels"][0, mine],
                                                   positive_rows=torch.tensor([1, 0]), exclude_rows=torch.arange(B))
    out["stop_gradient"] = (read.bank.requires_grad, read.grad, read.bank)
    out["in_batch_columns"] = (read.positive_index, read.exclude_index, read.labels, read.query_labels)

    torch.manual_seed(0)
    replicated = Queue(D, QUEUE_SIZE, store_labels=True)
    sharded = Queue(D, 8, sharding="sharded", init="zeros")
    out["replicated"], out["replicated_read"] = [], []
    for step in range(STEPS):
        replicated.write(
            data["queue_keys"][step, mine],
            labels=data["labels"][step, mine],
            index=torch.arange(B) + 2 * B * step + rank * B,
        )
        sharded.write(data["queue_keys"][step, mine])
        out["replicated"].append({name: value.clone() for name, value in replicated.state_dict().items()})
        queue_read = replicated.read(data["keys"][mine])
        out["replicated_read"].append((queue_read.bank, queue_read.labels))
    out["sharded"] = sharded.state_dict()
    out["sharded_read"] = sharded.read(data["keys"][mine]).bank

    for dtype in ("float32", "float16"):
        torch.manual_seed(0)
        bank = MemoryBank(D, BANK_SAMPLES, momentum=0.3, dtype=dtype)
        out[f"bank_{dtype}_init"] = bank.lookup(torch.arange(BANK_SAMPLES))
        for step in range(STEPS):
            bank.update(data["bank_indices"][step, mine], data["bank_features"][step, mine])
        out[f"bank_{dtype}"] = bank.lookup(torch.arange(BANK_SAMPLES))
        out[f"bank_{dtype}_state"] = {name: value.clone() for name, value in bank.state_dict().items()}
        torch.manual_seed(5 + rank)  # rank 0's draw is used everywhere, whatever the other ranks' RNG
        out[f"bank_{dtype}_sample"] = bank.sample(3, 5)
        # the protocol: read this rank's entries and draws, then write this rank's features
        torch.manual_seed(9 + rank)
        read = bank.read(data["keys"][mine], index=data["bank_read_indices"][mine])
        out[f"bank_{dtype}_read"] = (read.positive, read.bank, read.population)
        bank.write(data["bank_features"][0, mine], index=data["bank_read_indices"][mine])
        out[f"bank_{dtype}_written"] = bank.lookup(torch.arange(BANK_SAMPLES))
    return out


@pytest.fixture(scope="module")
def results():
    return run_distributed(_worker)


def _single_process_bank(dtype: str) -> tuple[MemoryBank, torch.Tensor]:
    data = _data()
    torch.manual_seed(0)
    bank = MemoryBank(D, BANK_SAMPLES, momentum=0.3, dtype=dtype)
    init = bank.lookup(torch.arange(BANK_SAMPLES))
    for step in range(STEPS):
        bank.update(data["bank_indices"][step], data["bank_features"][step])
    return bank, init


@pytest.mark.distributed
def test_workers_saw_two_processes(results):
    assert [r["world"] for r in results] == [2, 2]


@pytest.mark.distributed
def test_in_batch_gradient_equals_single_process_on_the_global_batch(results):
    data = _data()
    weight = data["weight"].clone().requires_grad_()
    loss, _ = _in_batch_loss(weight, data["queries"], data["keys"], InBatchKeys(D))
    loss.backward()
    for r in results:
        assert torch.allclose(r["in_batch_grad"], weight.grad, atol=1e-6)
    for rank, r in enumerate(results):
        requires_grad, grad, all_keys = r["stop_gradient"]
        assert requires_grad is False and grad is False and torch.equal(all_keys, data["keys"])
        # this rank's rows sit at rank * B of the global batch: its positives and exclusions point there
        positive_index, exclude_index, labels, query_labels = r["in_batch_columns"]
        assert positive_index.tolist() == [rank * B + 1, rank * B]
        assert exclude_index.tolist() == [rank * B, rank * B + 1]
        assert torch.equal(labels, data["labels"][0])  # the labels of every rank's keys
        assert torch.equal(query_labels, data["labels"][0, rank * B : (rank + 1) * B])


@pytest.mark.distributed
def test_replicated_queue_is_identical_on_ranks_and_equals_single_process(results):
    data = _data()
    torch.manual_seed(0)
    single = Queue(D, QUEUE_SIZE, store_labels=True)
    for step in range(STEPS):
        single.write(data["queue_keys"][step], labels=data["labels"][step])
        read = single.read(data["keys"])
        for rank in range(2):
            state = results[rank]["replicated"][step]
            for name, value in single.state_dict().items():
                assert torch.equal(state[name], value), (step, rank, name)
            bank, labels = results[rank]["replicated_read"][step]
            assert torch.equal(bank, read.bank) and torch.equal(labels, read.labels), (step, rank)
    assert int(single.ptr) == 2 and single.filled == QUEUE_SIZE  # it did wrap around


@pytest.mark.distributed
def test_sharded_queue_keeps_each_ranks_own_keys(results):
    data = _data()
    for rank, r in enumerate(results):
        single = Queue(D, 4, init="zeros")
        for step in range(STEPS):
            single.write(data["queue_keys"][step, rank * B : (rank + 1) * B])
        assert torch.equal(r["sharded"]["queue"], single.queue)
        assert int(r["sharded"]["ptr"]) == int(single.ptr) and r["sharded"]["shard"].tolist() == [rank, 2]
        assert torch.equal(r["sharded_read"], single.queue)  # each rank reads its own keys only


@pytest.mark.distributed
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_sharded_memory_bank_equals_single_process(results, dtype):
    single, init = _single_process_bank(dtype)
    for rank, r in enumerate(results):
        assert torch.equal(r[f"bank_{dtype}_init"], init)
        assert torch.equal(r[f"bank_{dtype}"], single.bank.float())
        local = r[f"bank_{dtype}_state"]["bank"]
        assert local.dtype == single.bank.dtype and torch.equal(local, single.bank[rank::2])
    assert [r[f"bank_{dtype}_state"]["bank"].shape[0] for r in results] == [4, 3]  # memory falls with ranks

    torch.manual_seed(5)
    vectors, indices = single.sample(2 * 3, 5)
    for rank, r in enumerate(results):
        got_vectors, got_indices = r[f"bank_{dtype}_sample"]
        assert torch.equal(got_indices, indices[rank * 3 : (rank + 1) * 3])
        assert torch.equal(got_vectors, vectors[rank * 3 : (rank + 1) * 3])

    # read and write through the protocol: one process reading and writing the global batch
    data = _data()
    single.negatives = 4096  # the default, as the ranks' banks
    torch.manual_seed(9)
    read = single.read(data["keys"], index=data["bank_read_indices"])
    single.write(data["bank_features"][0], index=data["bank_read_indices"])
    for rank, r in enumerate(results):
        positive, bank, population = r[f"bank_{dtype}_read"]
        assert torch.equal(positive, read.positive[rank * B : (rank + 1) * B])
        assert torch.equal(bank, read.bank[rank * B : (rank + 1) * B]) and population == BANK_SAMPLES
        assert torch.equal(r[f"bank_{dtype}_written"], single.bank.float())
