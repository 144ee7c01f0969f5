"""sslcore.distributed: identity on one process; on 2 gloo processes, values and gradients of the collectives."""

from __future__ import annotations

import pytest
import torch

from sslcore import distributed
from sslcore.testing import run_distributed

WORLD = 2
BATCH = 3


def rank_input(r: int) -> torch.Tensor:
    return torch.arange(BATCH * 2, dtype=torch.float64).reshape(BATCH, 2) + 10 * r


def rank_weights(r: int) -> torch.Tensor:
    """The upstream gradient rank ``r`` sends into the gathered tensor: loss_r = sum(gathered * weights_r)."""
    generator = torch.Generator().manual_seed(100 + r)
    return torch.randn(WORLD * BATCH, 2, generator=generator, dtype=torch.float64)


def _worker(rank: int, world: int) -> dict:
    r = distributed.rank()
    x = rank_input(r).requires_grad_(True)
    gathered = distributed.gather_with_grad(x)
    (gathered * rank_weights(r)).sum().backward()
    plain = distributed.gather(rank_input(r).requires_grad_(True))
    summed = distributed.all_reduce_sum(torch.tensor([r + 1.0]))
    mean = distributed.all_reduce_mean(torch.tensor([r + 1.0]))
    broadcast = distributed.broadcast(torch.tensor([float(r)]), src=1)
    return {
        "world_size": distributed.world_size(),
        "rank": r,
        "is_distributed": distributed.is_distributed(),
        "gathered": gathered.detach(),
        "grad": x.grad,
        "plain": plain,
        "plain_requires_grad": plain.requires_grad,
        "sum": summed,
        "mean": mean,
        "broadcast": broadcast,
    }


@pytest.mark.distributed
def test_collectives_on_two_processes():
    ranks = run_distributed(_worker, world_size=WORLD)
    assert [(r["world_size"], r["rank"], r["is_distributed"]) for r in ranks] == [(2, 0, True), (2, 1, True)]

    expected = torch.cat([rank_input(r) for r in range(WORLD)])
    for r in ranks:
        torch.testing.assert_close(r["gathered"], expected)
        torch.testing.assert_close(r["plain"], expected)
        assert not r["plain_requires_grad"]
        assert r["sum"].item() == 3.0 and r["mean"].item() == 1.5 and r["broadcast"].item() == 1.0

    # Backward of gather_with_grad: the sum over ranks of the upstream gradients, this rank's rows.
    # That is the gradient of sum_r loss_r w.r.t. x_r, computed here as one process would.
    inputs = [rank_input(r).requires_grad_(True) for r in range(WORLD)]
    everything = torch.cat(inputs)
    sum(((everything * rank_weights(r)).sum() for r in range(WORLD))).backward()
    for r in range(WORLD):
        torch.testing.assert_close(ranks[r]["grad"], inputs[r].grad)
        assert not torch.allclose(ranks[r]["grad"], rank_weights(r)[r * BATCH : (r + 1) * BATCH])


def test_one_process_is_identity():
    assert not distributed.is_distributed()
    assert (distributed.world_size(), distributed.rank()) == (1, 0)
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather_with_grad(x) is x
    assert distributed.gather(x) is x
    y = torch.tensor([2.0])
    assert distributed.all_reduce_sum(y) is y and y.item() == 2.0
    assert distributed.all_reduce_mean(y) is y and y.item() == 2.0
    assert distributed.broadcast(y, src=0) is y and y.item() == 2.0
