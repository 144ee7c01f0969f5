"""InvaSpread: the loss against the paper's formula written as loops, three training steps against the official
BatchCriterion written out here, the recipes, the engine, and 2 processes x B against 1 process x 2B."""

from __future__ import annotations

import copy
import functools
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sslcore_plugin_invaspread
import sslcore_plugin_invaspread.plugin as invaspread_plugin
from sslcore import distributed
from sslcore.components.heads import MLPHead, MLPHeadConfig
from sslcore.components.key_stores import InBatchKeys
from sslcore.errors import SslcoreError
from sslcore.keys import Keys, KeysMismatch
from sslcore.lookup import LookupDesign, LookupMethod
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import (
    TinyConfig,
    TinyNet,
    batch_of,
    build_method,
    build_recipe,
    modules_defined_by,
    run_distributed,
    tiny_host,
    training_step,
)
from sslcore.components.losses import InvaSpreadLoss

BATCH = 4  # global, images
TEMPERATURE = 0.1
SGD = dict(lr=0.03, momentum=0.9, weight_decay=5e-4)


@functools.cache
def make_host() -> PluginHost:
    return tiny_host("invaspread", invaspread_plugin)


DOCUMENT = {
    "backbone": {"kind": "tiny", "width": 6, "batch_norm": False},
    "heads": {"embedding": {"kind": "mlp", "num_layers": 1, "out_dim": 8}},
    "key_store": {"kind": "in_batch", "stop_gradient": True},
    "loss": {"kind": "invaspread", "temperature": TEMPERATURE},
    "method": {"kind": "invaspread"},
}


def build(document: dict | None = None):
    return build_method(document or DOCUMENT, host=make_host())


def step_data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 3, 8, 8, generator=generator), torch.randn(BATCH, 3, 8, 8, generator=generator))
            for _ in range(3)]


# -- the paper's Eq. (7) as the official code computes it, with explicit loops --------------------------------
def loop_loss(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """-1/2B sum_i [log P(i) + sum_{k != i, p(i)} log(1 - P(k|i))], anchors with gradient, keys constant."""
    anchors = torch.cat([f1, f2])
    keys = anchors.detach()
    n = anchors.shape[0]
    half = n // 2
    total = anchors.new_zeros(())
    for i in range(n):
        positive = (i + half) % n
        scores = [torch.exp(anchors[i] @ keys[k] / TEMPERATURE) for k in range(n)]
        denominator = sum(scores[k] for k in range(n) if k != i)
        total = total + torch.log(scores[positive] / denominator)
        for k in range(n):
            if k not in (i, positive):
                total = total + torch.log(1 - scores[k] / denominator)
    return -total / n


def official_batch_criterion(x: torch.Tensor) -> torch.Tensor:
    """BatchAverage.py BatchCriterion.forward with negM = 1, for x = [view 1; view 2] (2B, D)."""
    batch_size = x.size(0)
    reordered_x = torch.cat((x.narrow(0, batch_size // 2, batch_size // 2), x.narrow(0, 0, batch_size // 2)), 0)
    pos = (x * reordered_x.detach()).sum(1).div(TEMPERATURE).exp()
    all_prob = torch.mm(x, x.t().detach()).div(TEMPERATURE).exp() * (1 - torch.eye(batch_size))
    all_div = all_prob.sum(1)
    ln_pmt = torch.div(pos, all_div)
    ln_pon = torch.div(all_prob, all_div.repeat(batch_size, 1).t())
    ln_pon = (-ln_pon.add(-1)).log()
    ln_pon = ln_pon.sum(1) - (-ln_pmt.add(-1)).log()
    ln_pmt = ln_pmt.log()
    return -(ln_pmt.sum(0) + ln_pon.sum(0)) / batch_size


def in_batch_keys(query: torch.Tensor) -> Keys:
    """The keys of the joint layout (lookup.py's read): ``query`` is [view 1; view 2] (2B, D), each row's positive
    is its other view and its own row is left out."""
    n = query.shape[0] // 2
    rows = torch.arange(n)
    return InBatchKeys(query.shape[1], stop_gradient=True).read(
        query, positive_rows=torch.cat([rows + n, rows]), exclude_rows=torch.arange(2 * n)
    )


def test_loss_matches_the_formula_and_its_gradient():
    generator = torch.Generator().manual_seed(0)
    features = F.normalize(torch.randn(3, 2, 5, generator=generator, dtype=torch.float64), dim=2)
    mine = features.clone().requires_grad_(True)
    theirs = features.clone().requires_grad_(True)
    query = torch.cat([mine[:, 0], mine[:, 1]])
    loss = InvaSpreadLoss(temperature=TEMPERATURE)(query, in_batch_keys(query))
    expected = loop_loss(theirs[:, 0], theirs[:, 1])
    loss.backward()
    expected.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(mine.grad, theirs.grad)
    torch.testing.assert_close(official_batch_criterion(torch.cat([features[:, 0], features[:, 1]])), expected)
    flat = torch.cat([features[:, 0], features[:, 1]])
    with pytest.raises(ValueError, match=r"\(n, D\) queries"):
        InvaSpreadLoss()(features, in_batch_keys(flat))
    with pytest.raises(KeysMismatch, match="positive_index, exclude_index"):  # where the positive and self sit
        InvaSpreadLoss()(flat, Keys(bank=flat, positive=flat))


def test_three_steps_match_the_official_code():
    torch.manual_seed(0)
    method = build()
    reference = nn.Sequential(copy.deepcopy(method.backbone), copy.deepcopy(method.encoder.embedding))
    initial = [p.detach().clone() for p in method.parameters()]
    optimizer = torch.optim.SGD(method.parameters(), **SGD)
    reference_optimizer = torch.optim.SGD(reference.parameters(), **SGD)
    for step, (x1, x2) in enumerate(step_data()):
        output = training_step(method, optimizer, batch_of(x1, x2), StepInfo(step, 3, 3))

        features = F.normalize(reference(torch.cat((x1, x2), 0)), dim=1)  # demo_seen.py: net(cat(inputs1, inputs2))
        expected = official_batch_criterion(features)
        reference_optimizer.zero_grad()
        expected.backward()
        reference_optimizer.step()

        torch.testing.assert_close(output.loss, expected, rtol=1e-5, atol=1e-6)
        for got, want in zip(method.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert all(not torch.allclose(p, p0) for p, p0 in zip(method.parameters(), initial))


def test_rejects_wrong_views():
    torch.manual_seed(0)
    method = build()
    x1, _ = step_data()[0]
    with pytest.raises(SslcoreError, match="2 views"):
        method(Batch(views=[x1], index=torch.arange(BATCH)), StepInfo(0, 1, 1))


@pytest.mark.parametrize("kind", ["queue", "memory_bank"])
def test_a_key_store_that_does_not_fit_stops_the_first_step_with_one_line(kind):
    # Components are swappable wherever the mathematics allows. The invaspread loss needs each query's positive
    # and its own column in a shared bank (in-batch keys); a queue or a memory bank gives neither, and the first
    # step says so in one line naming both tables (the build itself no longer guards it).
    torch.manual_seed(0)
    method = build({**DOCUMENT, "key_store": {"kind": kind, "size": 16} if kind == "queue" else {"kind": kind}})
    x1, x2 = step_data()[0]
    with pytest.raises(SslcoreError, match=rf"\[loss\] 'invaspread' and \[key_store\] '{kind}' do not fit") as error:
        method(batch_of(x1, x2), StepInfo(0, 1, 1))
    assert "positive_index" in str(error.value) and "\n" not in str(error.value)


def test_another_contrastive_loss_trains_on_the_invaspread_pipeline():
    # No longer rejected ("invaspread needs its own loss"): NT-Xent reads the same in-batch keys.
    torch.manual_seed(0)
    method = build({**DOCUMENT, "loss": {"kind": "ntxent"}})
    optimizer = torch.optim.SGD(method.parameters(), **SGD)
    before = method.backbone.net[0].weight.detach().clone()
    for step, (x1, x2) in enumerate(step_data()[:2]):
        loss = training_step(method, optimizer, batch_of(x1, x2), StepInfo(step, 3, 3)).loss
        assert math.isfinite(loss.item())
    assert not torch.allclose(method.backbone.net[0].weight, before)


def test_plugin_holds_no_forward_of_its_own():
    """The plugin is a config class, a build function and recipes: the method is the core's look-up method."""
    method = build()
    assert type(method) is LookupMethod
    assert type(method.loss) is InvaSpreadLoss
    assert modules_defined_by(sslcore_plugin_invaspread) == []


def test_recipes_resolve_and_smoke_builds():
    host = make_host()
    for name in ("invaspread_resnet18", "invaspread_cifar10"):
        recipe = resolve(name, host)
        assert recipe.components["loss"].config.temperature == 0.1
        assert recipe.components["heads.embedding"].config.out_dim == 128
        assert recipe.components["views"].config.num_views == 2
        assert (recipe.run.batch_size, recipe.optimizer.base_lr, recipe.optimizer.weight_decay) == (128, 0.03, 5e-4)

    torch.manual_seed(0)
    _, method = build_recipe("invaspread_smoke", host, num_samples=64, total_steps=4, steps_per_epoch=4)
    views = [torch.randn(16, 3, 32, 32), torch.randn(16, 3, 32, 32)]
    loss = method(Batch(views=views, index=torch.arange(16)), StepInfo(0, 4, 4)).loss
    assert loss.ndim == 0 and math.isfinite(loss.item())


def test_engine_trains_the_smoke_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sslcore.engine.trainer import train_from_recipe  # imported here: the gloo workers never need it

    summary = train_from_recipe("invaspread_smoke", [f"run.output_dir={tmp_path}"], host=make_host())
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    assert 0.0 <= summary["knn_top1"] <= 100.0
    assert (tmp_path / "invaspread_smoke" / "backbone.safetensors").is_file()


# -- 2 processes x 2 images == 1 process x 4 images -----------------------------------------------------------
#: invaspread's look-up design (build_invaspread's); the 2-process test checks it is the one the plugin builds.
INVASPREAD_DESIGN = LookupDesign(
    pairs=((0, 1), (1, 0)), joint=True, keys_from="online", head="embedding", one_pass=True, normalize=True
)


def build_direct() -> LookupMethod:
    """The method of DOCUMENT, built from its classes: the gloo workers skip the plugin host's imports."""
    embedding = MLPHead(MLPHeadConfig(num_layers=1, out_dim=8), in_dim=6)
    backbone = TinyNet(TinyConfig(width=6, batch_norm=False))
    return LookupMethod(
        "invaspread", INVASPREAD_DESIGN, encoder=nn.Sequential(OrderedDict(backbone=backbone, embedding=embedding)),
        predictor=None, updater=None, stores=[InBatchKeys(8, stop_gradient=True)], loss=InvaSpreadLoss(TEMPERATURE),
        combination="[loss] 'invaspread' and [key_store] 'in_batch'",
    )


def train(rank: int, world: int) -> dict:
    """Three SGD steps on this rank's images of the global batch (DDP averages the gradients when world > 1)."""
    torch.manual_seed(0)
    method = build_direct()
    model = torch.nn.parallel.DistributedDataParallel(method, broadcast_buffers=False) if world > 1 else method
    optimizer = torch.optim.SGD(method.parameters(), **SGD)
    local = BATCH // world
    rows = slice(rank * local, (rank + 1) * local)
    losses = []
    for step, (x1, x2) in enumerate(step_data()):
        batch = Batch(views=[x1[rows], x2[rows]], index=torch.arange(BATCH)[rows])
        output = training_step(method, optimizer, batch, StepInfo(step, 3, 3), model=model)
        losses.append(output.loss.detach())
    return {
        "world": distributed.world_size(),
        "losses": torch.stack(losses),
        "params": [p.detach().clone() for p in method.parameters()],
    }


@pytest.mark.distributed
def test_two_processes_equal_one_process_with_the_global_batch():
    built = build()
    shapes = {name: tensor.shape for name, tensor in built.state_dict().items()}
    assert shapes == {name: tensor.shape for name, tensor in build_direct().state_dict().items()}
    assert built.design == INVASPREAD_DESIGN
    ranks = run_distributed(train, world_size=2)
    single = train(0, 1)
    assert [r["world"] for r in ranks] == [2, 2]
    torch.testing.assert_close((ranks[0]["losses"] + ranks[1]["losses"]) / 2, single["losses"], rtol=1e-5, atol=1e-6)
    for result in ranks:
        for got, want in zip(result["params"], single["params"], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
