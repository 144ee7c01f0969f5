"""Key stores on one process: registration, what ``read`` answers, queue FIFO semantics under ``write``,
memory-bank formulas, state round trips."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslcore.components import key_store_configs
from sslcore.components.key_stores import memory_bank as memory_bank_module
from sslcore.components.key_stores import (
    InBatchConfig,
    InBatchKeys,
    MemoryBank,
    MemoryBankConfig,
    Queue,
    QueueConfig,
)
from sslcore.errors import SslcoreError
from sslcore.keys import Keys
from sslcore.registry import Registry


def test_registered_names_build_with_default_configs():
    registry = Registry("key_store")
    key_store_configs.sslcore_register_key_stores(registry)
    assert registry.names() == ["in_batch", "memory_bank", "queue"]
    built = {entry.name: entry.build(entry.config(), dim=8, num_samples=10) for entry in registry}
    assert isinstance(built["in_batch"], InBatchKeys) and built["in_batch"].sharding == "in_batch"
    assert built["queue"].queue.shape == (65536, 8) and built["queue"].sharding == "replicated"
    assert built["memory_bank"].bank.shape == (10, 8) and built["memory_bank"].sharding == "sharded"


def test_config_validation():
    with pytest.raises(ValueError):
        QueueConfig(size=0)
    with pytest.raises(ValueError):
        QueueConfig(sharding="everywhere")
    with pytest.raises(ValueError):
        MemoryBankConfig(momentum=1.0)
    with pytest.raises(ValueError):
        MemoryBankConfig(dtype="bfloat16")
    with pytest.raises(ValueError):
        MemoryBankConfig(negatives=0)
    assert MemoryBankConfig().negatives == 4096  # lemniscate --nce-k


def test_every_store_answers_read_with_keys_and_takes_write():
    registry = Registry("key_store")
    key_store_configs.sslcore_register_key_stores(registry)
    keys, index = F.normalize(torch.randn(3, 8), dim=1), torch.tensor([0, 4, 9])
    for entry in registry:
        store = entry.build(entry.config(), dim=8, num_samples=10)
        assert isinstance(store.read(keys, index=index), Keys), entry.name
        store.write(keys, index=index)


# ---------------------------------------------------------------- in-batch


def test_in_batch_single_process_is_identity_with_offset_zero():
    store = InBatchKeys(3)
    keys = torch.randn(4, 3, requires_grad=True)
    read = store.read(keys)
    assert torch.equal(read.bank, keys) and read.bank.requires_grad and read.grad is True
    assert read.positive_index.tolist() == [0, 1, 2, 3] and read.positive is None
    assert read.exclude_index is None and read.labels is None and read.query_labels is None
    with pytest.raises(SslcoreError, match=r"\(batch, 3\)"):
        store.read(torch.randn(4, 5))
    assert InBatchConfig().stop_gradient is False


def test_in_batch_read_passes_positive_rows_exclusions_and_labels_through():
    keys, labels = torch.randn(4, 3), torch.tensor([3, 1, 3, 0])
    read = InBatchKeys(3).read(keys, labels=labels, positive_rows=torch.tensor([2, 3, 0, 1]),
                               exclude_rows=torch.arange(4), index=torch.tensor([9, 8, 7, 6]))
    assert read.positive_index.tolist() == [2, 3, 0, 1] and read.exclude_index.tolist() == [0, 1, 2, 3]
    assert read.labels.tolist() == [3, 1, 3, 0] and read.query_labels.tolist() == [3, 1, 3, 0]
    frozen = InBatchKeys(3, stop_gradient=True).read(keys.requires_grad_())
    assert torch.equal(frozen.bank, keys) and not frozen.bank.requires_grad and frozen.grad is False
    InBatchKeys(3).write(keys)  # stateless: writing keeps nothing
    assert dict(InBatchKeys(3).state_dict()) == {}


# ---------------------------------------------------------------- queue


def _reference_fifo(capacity: int, batches: list[torch.Tensor]) -> tuple[list[torch.Tensor | None], int, int]:
    """A queue written one key at a time into slot ``ptr``, the pointer moving on modulo the capacity."""
    slots: list[torch.Tensor | None] = [None] * capacity
    ptr = filled = 0
    for batch in batches:
        for key in batch:
            slots[ptr] = key
            ptr = (ptr + 1) % capacity
            filled = min(filled + 1, capacity)
    return slots, ptr, filled


@pytest.mark.parametrize("batch", [2, 3])  # 3 does not divide the capacity: wrap-around inside a batch
def test_queue_fifo_with_wrap_around_matches_reference(batch):
    torch.manual_seed(0)
    queue = Queue(4, 6, init="zeros", store_labels=True)
    batches = [torch.randn(batch, 4) for _ in range(5)]
    for step, keys in enumerate(batches):
        queue.write(keys, labels=torch.full((batch,), step), index=torch.arange(batch) + 10 * step)
        slots, ptr, filled = _reference_fifo(6, batches[: step + 1])
        assert int(queue.ptr) == ptr and queue.filled == filled
        for slot, expected in enumerate(slots):
            if expected is None:
                assert torch.equal(queue.queue[slot], torch.zeros(4))
                assert int(queue.queue_labels[slot]) == -1
            else:
                assert torch.equal(queue.queue[slot], expected)
        # read's bank holds the filled slots only (an empty slot is no key), in slot order, with their labels
        read = queue.read(torch.randn(1, 4))
        held = [slot for slot, expected in enumerate(slots) if expected is not None]
        assert torch.equal(read.bank, torch.stack([slots[slot] for slot in held]))
        assert torch.equal(read.labels, queue.queue_labels[held])
    # the queue holds exactly the 6 most recent keys
    recent = torch.cat(batches)[-6:]
    assert sorted(map(tuple, read.bank.tolist())) == sorted(map(tuple, recent.tolist()))
    labels = torch.cat([torch.full((batch,), s) for s in range(5)])[-6:]
    assert sorted(read.labels.tolist()) == sorted(labels.tolist())


def test_queue_read_gives_this_steps_keys_as_positives_and_the_stored_keys_as_the_bank():
    torch.manual_seed(0)
    queue = Queue(4, 5)
    keys, labels = torch.randn(3, 4), torch.tensor([1, 0, 1])
    read = queue.read(keys, labels=labels, exclude_rows=torch.arange(3))  # nothing of this step is in the bank
    assert torch.equal(read.positive, keys) and torch.equal(read.bank, queue.queue)
    assert read.positive_index is None and read.exclude_index is None and read.labels is None
    assert torch.equal(read.query_labels, labels) and read.grad is False
    swapped = queue.read(keys, positive_rows=torch.tensor([2, 0, 1]))
    assert torch.equal(swapped.positive, keys[[2, 0, 1]])
    # an unfilled zero-initialised queue gives only what was written: no zero vectors as negatives
    empty = Queue(4, 5, init="zeros")
    assert empty.read(keys).bank.shape == (0, 4)
    empty.write(keys)
    assert torch.equal(empty.read(keys).bank, keys)


def test_queue_random_init_is_unit_norm_like_moco():
    torch.manual_seed(0)
    queue = Queue(16, 32)
    assert queue.filled == 0
    bank = queue.read(torch.randn(2, 16)).bank  # the random initial keys are negatives from step 0, as MoCo's
    assert bank.shape == (32, 16)
    assert torch.allclose(bank.norm(dim=1), torch.ones(32), atol=1e-6)
    assert bank.std() > 0.1  # not a constant


def test_queue_keys_are_a_detached_snapshot():
    torch.manual_seed(0)
    queue = Queue(4, 4)
    query = torch.randn(2, 4, requires_grad=True)
    logits = query @ queue.read(torch.randn(2, 4)).bank.T
    before = queue.read(torch.randn(2, 4)).bank
    queue.write(torch.randn(2, 4))  # a write before backward must not change the graph's input
    logits.sum().backward()
    assert query.grad is not None
    assert torch.equal(query.grad, before.sum(0).expand(2, 4))
    assert not torch.equal(queue.read(torch.randn(2, 4)).bank, before)


def test_queue_input_errors():
    queue = Queue(4, 4, store_labels=True)
    with pytest.raises(SslcoreError, match="stores labels .* need labels"):
        queue.write(torch.randn(2, 4))
    with pytest.raises(SslcoreError, match="cannot enqueue 5 keys"):
        queue.write(torch.randn(5, 4), labels=torch.zeros(5))
    with pytest.raises(SslcoreError, match="shape"):
        queue.write(torch.randn(2, 4), labels=torch.zeros(3))
    with pytest.raises(SslcoreError, match=r"\(batch, 4\)"):
        queue.write(torch.randn(2, 3), labels=torch.zeros(2))
    with pytest.raises(SslcoreError, match=r"\(batch, 4\)"):
        queue.read(torch.randn(2, 3))
    assert int(queue.ptr) == 0 and queue.filled == 0  # nothing was written by the failed writes


def test_queue_write_ignores_what_it_does_not_keep():
    """Every store takes ``write(keys, index=, labels=)``; a queue keeps no sample indices, and labels only with
    ``store_labels``, so the rest is ignored rather than refused (one method feeds every store alike)."""
    torch.manual_seed(0)
    keys = torch.randn(2, 4)
    plain, given = Queue(4, 4), Queue(4, 4)
    given.load_state_dict(plain.state_dict())
    plain.write(keys)
    given.write(keys, index=torch.tensor([3, 7]), labels=torch.tensor([1, 2]))
    assert set(given.state_dict()) == {"queue", "ptr", "count"}
    for name, value in plain.state_dict().items():
        assert torch.equal(given.state_dict()[name], value), name


def test_queue_state_dict_round_trip_restores_keys_and_pointer():
    torch.manual_seed(0)
    queue = Queue(4, 5, store_labels=True)
    for step in range(3):
        queue.write(torch.randn(2, 4), labels=torch.full((2,), step), index=torch.arange(2) + step)
    state = {name: value.clone() for name, value in queue.state_dict().items()}
    assert set(state) == {"queue", "ptr", "count", "queue_labels"}

    restored = Queue(4, 5, store_labels=True)  # different random init
    restored.load_state_dict(state)
    for name, value in restored.state_dict().items():
        assert torch.equal(value, state[name]), name
    more = torch.randn(2, 4)
    queue.write(more, labels=torch.zeros(2))
    restored.write(more, labels=torch.zeros(2))
    assert torch.equal(queue.queue, restored.queue) and int(restored.ptr) == 3 and restored.filled == 5
    assert torch.equal(queue.read(more).bank, restored.read(more).bank)


def test_sharded_queue_on_one_process_keeps_all_slots_and_records_its_shard():
    queue = Queue(4, 6, sharding="sharded")
    assert queue.capacity == 6 and queue.shard.tolist() == [0, 1]
    state = queue.state_dict()
    state["shard"] = torch.tensor([1, 2])
    with pytest.raises(SslcoreError, match="saved by rank 1 of 2"):
        Queue(4, 6, sharding="sharded").load_state_dict(state)


# ---------------------------------------------------------------- memory bank


def test_memory_bank_init_follows_lemniscate():
    torch.manual_seed(0)
    bank = MemoryBank(12, 500)
    stdv = 1.0 / math.sqrt(12 / 3)
    assert bank.bank.shape == (500, 12) and bank.bank.dtype == torch.float32
    assert bank.bank.min() >= -stdv and bank.bank.max() <= stdv
    assert bank.bank.min() < -0.9 * stdv and bank.bank.max() > 0.9 * stdv  # spans the interval
    assert abs(float(bank.bank.mean())) < 0.05


@pytest.mark.parametrize("world", [2, 3])
def test_memory_bank_shards_interleave_to_the_single_process_bank(monkeypatch, world):
    monkeypatch.setattr(memory_bank_module, "_INIT_CHUNK_ROWS", 4)  # several chunks, boundaries off the stride
    num_samples, dim = 11, 3  # not divisible by the world size
    whole = memory_bank_module._initial_rows(num_samples, dim, 0, 1, 123, torch.float32)
    shards = [memory_bank_module._initial_rows(num_samples, dim, r, world, 123, torch.float32) for r in range(world)]
    assert sum(s.shape[0] for s in shards) == num_samples
    for r, shard in enumerate(shards):
        assert torch.equal(shard, whole[r::world])


def test_memory_bank_update_matches_the_explicit_formula():
    torch.manual_seed(0)
    bank = MemoryBank(5, 9, momentum=0.3)
    before = bank.bank.clone()
    indices = torch.tensor([4, 0, 7, 4])  # 4 twice: the last occurrence wins
    features = F.normalize(torch.randn(4, 5), dim=1)
    bank.update(indices, features)

    expected = before.clone()
    for i, f in [(0, features[1]), (7, features[2]), (4, features[3])]:
        v = 0.3 * before[i] + 0.7 * f
        expected[i] = v / math.sqrt(sum(float(x) ** 2 for x in v))
    assert torch.allclose(bank.bank, expected, atol=1e-6)
    assert torch.allclose(bank.lookup(torch.tensor([7, 4, 2])), expected[[7, 4, 2]])


def test_memory_bank_float16_storage_computes_in_float32():
    torch.manual_seed(0)
    bank = MemoryBank(6, 4, dtype="float16")
    assert bank.bank.dtype == torch.float16
    stored = bank.bank.clone()
    feature = F.normalize(torch.randn(1, 6), dim=1)
    bank.update(torch.tensor([2]), feature)
    mixed = 0.5 * stored[2].float() + 0.5 * feature[0]
    assert torch.equal(bank.bank[2], (mixed / mixed.norm()).half())
    looked_up = bank.lookup(torch.tensor([2]))
    assert looked_up.dtype == torch.float32 and torch.equal(looked_up[0], bank.bank[2].float())


def test_memory_bank_sample_is_uniform_with_replacement_per_query():
    torch.manual_seed(0)
    bank = MemoryBank(4, 20)
    torch.manual_seed(7)
    vectors, indices = bank.sample(3, 50)
    torch.manual_seed(7)
    assert torch.equal(indices, torch.randint(20, (3, 50)))
    assert vectors.shape == (3, 50, 4) and vectors.dtype == torch.float32
    for b in range(3):
        for j in range(50):
            assert torch.equal(vectors[b, j], bank.bank[indices[b, j]])
    counts = torch.bincount(bank.sample(200, 100)[1].flatten(), minlength=20).float()
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()


def test_memory_bank_read_is_the_stored_entries_and_uniform_draws_and_write_is_the_update():
    torch.manual_seed(0)
    bank = MemoryBank(4, 20, momentum=0.3, negatives=6)
    features, index = F.normalize(torch.randn(3, 4), dim=1), torch.tensor([5, 0, 5])
    torch.manual_seed(7)
    read = bank.read(features, index=index, positive_rows=torch.tensor([1, 2, 0]), exclude_rows=torch.arange(3))
    torch.manual_seed(7)
    vectors, _ = bank.sample(3, 6)
    assert torch.equal(read.positive, bank.lookup(index))  # each query's own entry, before this step's write
    assert torch.equal(read.bank, vectors) and read.bank.shape == (3, 6, 4)  # `negatives` draws per query
    assert read.population == 20 and read.grad is False
    assert read.positive_index is None and read.exclude_index is None and read.labels is None

    twin = MemoryBank(4, 20, momentum=0.3)
    twin.load_state_dict(bank.state_dict())
    bank.write(features, index=index, labels=torch.tensor([1, 2, 3]))
    twin.update(index, features)
    assert torch.equal(bank.bank, twin.bank)
    with pytest.raises(SslcoreError, match="read it with index="):
        bank.read(features)
    with pytest.raises(SslcoreError, match="write it with index="):
        bank.write(features)


def test_memory_bank_input_errors():
    bank = MemoryBank(4, 10)
    with pytest.raises(SslcoreError, match="index 10 outside"):
        bank.lookup(torch.tensor([1, 10]))
    with pytest.raises(SslcoreError, match="index 10 outside"):
        bank.read(torch.randn(2, 4), index=torch.tensor([1, 10]))
    with pytest.raises(SslcoreError, match=r"\(batch, 4\)"):
        bank.read(torch.randn(2, 3), index=torch.tensor([1, 2]))
    with pytest.raises(SslcoreError, match="index -1 outside"):
        bank.update(torch.tensor([-1]), torch.randn(1, 4))
    with pytest.raises(SslcoreError, match="integer"):
        bank.lookup(torch.tensor([1.0]))
    with pytest.raises(SslcoreError, match="2 features for 3 indices"):
        bank.update(torch.tensor([1, 2, 3]), torch.randn(2, 4))
    with pytest.raises(SslcoreError, match="positive batch"):
        bank.sample(0, 3)


def test_memory_bank_state_dict_round_trip():
    torch.manual_seed(0)
    bank = MemoryBank(4, 10, dtype="float16")
    bank.update(torch.tensor([1, 5]), F.normalize(torch.randn(2, 4), dim=1))
    state = {name: value.clone() for name, value in bank.state_dict().items()}
    assert set(state) == {"bank", "shard"}
    restored = MemoryBank(4, 10, dtype="float16")
    assert not torch.equal(restored.bank, bank.bank)
    restored.load_state_dict(state)
    assert torch.equal(restored.bank, bank.bank) and restored.bank.dtype == torch.float16
    state["shard"] = torch.tensor([0, 4])
    with pytest.raises(SslcoreError, match="saved by rank 0 of 4"):
        restored.load_state_dict(state)
