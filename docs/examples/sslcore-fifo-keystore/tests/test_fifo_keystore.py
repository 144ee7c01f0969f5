"""The fifo key store's own tests: how a plugin tests itself against sslcore."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import sslcore_fifo_keystore as fifo
from sslcore.config import structure
from sslcore.distributed import world_size
from sslcore.errors import SslcoreError
from sslcore.keys import Keys
from sslcore.plugins import PluginHost
from sslcore.testing import run_distributed


@pytest.fixture
def host() -> PluginHost:
    # A fresh plugin manager holding the built-ins and this plugin only: nothing else installed is loaded.
    return PluginHost(autoload=False, extra_plugins=[("fifo", fifo)])


def test_registered_with_its_config(host: PluginHost) -> None:
    entry = host.registries["key_store"].get("fifo")
    assert entry.config is fifo.FifoConfig
    assert str(entry.provider) == "fifo"
    assert entry.description == "A FIFO of the most recent keys, replicated on every rank."


def test_options_are_validated_like_a_recipe_table() -> None:
    def options(**table):
        return structure(table, fifo.FifoConfig, where="recipe.toml", path="key_store")

    assert options(size=16) == fifo.FifoConfig(size=16, normalize=True)
    with pytest.raises(SslcoreError, match=r"^recipe.toml \[key_store.size\]: must be > 0: 0$"):
        options(size=0)
    with pytest.raises(SslcoreError, match=r"^recipe.toml \[key_store.normalize\]: expected a boolean"):
        options(normalize="yes")


def test_keeps_the_most_recent_keys_in_order(host: PluginHost) -> None:
    torch.manual_seed(0)
    store = host.registries["key_store"].get("fifo").build(fifo.FifoConfig(size=5, normalize=False), dim=3, num_samples=10)
    assert torch.equal(store.queue, torch.zeros(5, 3))
    first, second = torch.randn(3, 3), torch.randn(4, 3)
    store.write(first)
    store.write(second)
    # Slots 0, 1, 2 take `first`; slots 3, 4 and then 0, 1 (wrapping) take `second`.
    assert torch.equal(store.queue, torch.stack([second[2], second[3], first[2], second[0], second[1]]))
    assert int(store.ptr) == 2


def test_read_gives_this_steps_keys_as_positives_and_the_stored_keys_as_negatives() -> None:
    torch.manual_seed(0)
    store = fifo.FifoKeyStore(dim=4, size=6, normalize=True)
    keys = torch.randn(3, 4)
    read = store.read(keys)
    assert isinstance(read, Keys)
    assert torch.equal(read.positive, keys) and torch.equal(read.bank, store.queue)
    assert torch.equal(store.read(keys, positive_rows=torch.tensor([2, 0, 1])).positive, keys[[2, 0, 1]])
    # The bank is a snapshot: the write that follows the step does not change what the loss saw.
    store.write(torch.randn(3, 4))
    assert not torch.equal(read.bank, store.queue)


def test_works_with_a_contrastive_loss(host: PluginHost) -> None:
    """The built-in ``infonce`` takes the fifo's keys as they come: MoCo's logits ``[q.k+, q.queue] / T``."""
    torch.manual_seed(0)
    store = fifo.FifoKeyStore(dim=4, size=6, normalize=True)
    entry = host.registries["loss"].get("infonce")
    loss = entry.build(entry.config(temperature=0.2))
    q, k = F.normalize(torch.randn(3, 4), dim=1), F.normalize(torch.randn(3, 4), dim=1)
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ store.queue.T], dim=1) / 0.2
    torch.testing.assert_close(loss(q, store.read(k)), F.cross_entropy(logits, torch.zeros(3, dtype=torch.long)))


def test_normalizes_stored_keys() -> None:
    torch.manual_seed(0)
    store = fifo.FifoKeyStore(dim=4, size=6, normalize=True)
    assert torch.allclose(store.queue.norm(dim=1), torch.ones(6))
    keys = torch.randn(2, 4) * 7
    store.write(keys)
    assert torch.allclose(store.queue[:2], keys / keys.norm(dim=1, keepdim=True))


def test_state_is_saved_and_restored() -> None:
    torch.manual_seed(0)
    store = fifo.FifoKeyStore(dim=2, size=4, normalize=False)
    store.write(torch.randn(3, 2))
    restored = fifo.FifoKeyStore(dim=2, size=4, normalize=False)
    restored.load_state_dict(store.state_dict())
    assert sorted(store.state_dict()) == ["ptr", "queue"]
    assert torch.equal(restored.queue, store.queue) and int(restored.ptr) == 3


def test_rejects_bad_keys() -> None:
    store = fifo.FifoKeyStore(dim=2, size=2, normalize=False)
    with pytest.raises(SslcoreError, match="cannot store 3 keys in a fifo of size 2"):
        store.write(torch.zeros(3, 2))
    with pytest.raises(SslcoreError, match=r"expects keys as a floating \(batch, 2\) tensor"):
        store.write(torch.zeros(1, 3))
    with pytest.raises(SslcoreError, match=r"expects keys as a floating \(batch, 2\) tensor"):
        store.read(torch.zeros(1, 3))


def _replicated(rank: int, world: int):
    torch.manual_seed(rank)  # different random initial queues, which the store must replace by rank 0's
    store = fifo.FifoKeyStore(dim=2, size=4, normalize=True)
    initial = store.queue.clone()
    store.write(torch.tensor([[1.0, float(rank)]]))
    return world_size(), initial, store.read(torch.zeros(1, 2)).bank


@pytest.mark.distributed
def test_every_rank_holds_the_same_queue() -> None:
    (world0, initial0, keys0), (world1, initial1, keys1) = run_distributed(_replicated)
    assert world0 == world1 == 2
    assert torch.equal(initial0, initial1)
    assert torch.equal(keys0, keys1)
    # One key from each rank, in rank order, as one process would store a batch of both.
    expected = torch.tensor([[1.0, 0.0], [2**-0.5, 2**-0.5]])
    assert torch.allclose(keys0[:2], expected)
    assert torch.equal(keys0[2:], initial0[2:])
