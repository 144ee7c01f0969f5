"""MoCo v1 / v2: reference steps against the official algorithm, shuffling BN, 2 processes, recipes."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from importlib.resources import files
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sslcore_plugin_moco
import sslcore_plugin_moco.plugin as moco_plugin
from sslcore import distributed
from sslcore.errors import SslcoreError
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import (
    TinyConfig,
    TinyNet,
    batch_of,
    build_method,
    copy_state,
    modules_defined_by,
    run_distributed,
    single_thread,
    tiny_host,
    training_step,
)
from sslcore.components.heads import MLPHead, MLPHeadConfig
from sslcore.components.key_stores import Queue
from sslcore.components.losses import InfoNCELoss
from sslcore.components.shuffle_bn import grouped_forward, shuffled_forward
from sslcore.components.target_updaters import EMAUpdater
from sslcore.lookup import LookupDesign, LookupMethod

WIDTH, HIDDEN, DIM = 6, 10, 4  # backbone width, head hidden width, key width
STEPS = 3
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, which only contend with parallel test runs."""
    with single_thread():
        yield


def host() -> PluginHost:
    return tiny_host("moco", moco_plugin)


def document(*, head_layers: int = 2, queue: int = 16, temperature: float = 0.2, momentum: float = 0.9,
             batch_norm: bool = True, **method) -> dict:
    head = {"kind": "mlp", "num_layers": head_layers, "out_dim": DIM}
    if head_layers > 1:
        head["hidden_dim"] = HIDDEN
    return {
        "method": {"kind": "moco", **method},
        "backbone": {"kind": "tiny", "width": WIDTH, "batch_norm": batch_norm},
        "heads": {"projector": head},
        "key_store": {"kind": "queue", "size": queue},
        "target_updater": {"kind": "ema", "base_momentum": momentum, "buffers": "own"},
        "loss": {"kind": "infonce", "temperature": temperature},
    }


def make_moco(**kwargs) -> LookupMethod:
    """MoCo built from a recipe document through the plugin's factory."""
    torch.manual_seed(0)
    return build_method(document(**kwargs), host=host(), total_steps=STEPS, steps_per_epoch=STEPS)


def moco_design(*, shuffle_bn: bool = True, bn_group_size: int | None = None) -> LookupDesign:
    """The design ``build_moco`` gives for these options (asymmetric); checked against it in the 2-process test."""
    return LookupDesign(pairs=((0, 1),), target_when="before_forward", normalize=True, shuffle_bn=shuffle_bn,
                        bn_group_size=bn_group_size)


def direct_moco(**config) -> LookupMethod:
    """The same MoCo (v2 head, defaults of :func:`document`) built from its parts, without a plugin host: the
    distributed workers then skip importing every built-in plugin."""
    torch.manual_seed(0)
    backbone = TinyNet(TinyConfig(width=WIDTH))
    head = MLPHead(MLPHeadConfig(num_layers=2, hidden_dim=HIDDEN, out_dim=DIM), WIDTH)
    return LookupMethod(
        "moco", moco_design(**config), encoder=nn.Sequential(OrderedDict(backbone=backbone, projector=head)),
        predictor=None, updater=EMAUpdater(base_momentum=0.9, buffers="own"), stores=[Queue(DIM, 16)],
        loss=InfoNCELoss(temperature=0.2), combination="[loss] 'infonce' and [key_store] 'queue'",
    )


def images(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 8, 8, generator=generator), torch.randn(batch, 3, 8, 8, generator=generator)


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in params if p.requires_grad], lr=0.5, momentum=0.9, weight_decay=1e-4)


def train(model: nn.Module, method: LookupMethod, views: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """The engine's loop, forward through ``model`` (possibly DDP); returns the losses."""
    optimizer = sgd(method.parameters())
    losses = []
    for t, (x1, x2) in enumerate(views):
        info = StepInfo(t, len(views), len(views))
        torch.manual_seed(100 + t)  # the shuffle permutation
        losses.append(training_step(method, optimizer, batch_of(x1, x2), info, model=model).loss.detach())
    return losses


# -- the reference: the official moco/builder.py forward and Algorithm 1, written out plainly -----------------
class ReferenceEncoder(nn.Module):
    """f_q: conv -> BN -> ReLU -> average pool, then the head (Linear [-> ReLU -> Linear])."""

    def __init__(self, head_layers: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, WIDTH, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(WIDTH)
        if head_layers == 1:
            self.fc = nn.Sequential(nn.Linear(WIDTH, DIM))
        else:
            self.fc = nn.Sequential(nn.Linear(WIDTH, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, DIM))

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def reference_moco(method: LookupMethod, views, *, head_layers, m, T, group, shuffle=True, symmetric=False):
    """MoCo step by step as facebookresearch/moco (builder.py, and the CIFAR demo for ``symmetric``)."""
    f_q = ReferenceEncoder(head_layers)
    copy_state(f_q, method.encoder)
    f_k = copy.deepcopy(f_q)  # param_k.data.copy_(param_q.data)
    queue = method.stores[0].queue.detach().clone().T.contiguous()  # official layout: (dim, K)
    K = queue.shape[1]
    ptr = 0
    optimizer = sgd(f_q.parameters())

    def per_gpu(net, x):  # BatchNorm per group of `group` samples, like one GPU each
        return torch.cat([net(chunk) for chunk in x.split(group)])

    def contrastive_loss(im_q, im_k):
        q = F.normalize(per_gpu(f_q, im_q), dim=1)
        with torch.no_grad():
            if shuffle:
                idx_shuffle = torch.randperm(im_k.shape[0])
                idx_unshuffle = torch.argsort(idx_shuffle)
                k = F.normalize(per_gpu(f_k, im_k[idx_shuffle]), dim=1)[idx_unshuffle]
            else:
                k = F.normalize(per_gpu(f_k, im_k), dim=1)
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", q, queue.clone().detach())
        logits = torch.cat([l_pos, l_neg], dim=1) / T
        labels = torch.zeros(logits.shape[0], dtype=torch.long)
        return F.cross_entropy(logits, labels), k

    losses = []
    for t, (x1, x2) in enumerate(views):
        torch.manual_seed(100 + t)
        with torch.no_grad():  # _momentum_update_key_encoder, at the start of forward
            for param_q, param_k in zip(f_q.parameters(), f_k.parameters()):
                param_k.mul_(m).add_(param_q.mul(1.0 - m))
        if symmetric:
            loss_12, k2 = contrastive_loss(x1, x2)
            loss_21, k1 = contrastive_loss(x2, x1)
            loss, k = loss_12 + loss_21, torch.cat([k1, k2])
        else:
            loss, k = contrastive_loss(x1, x2)
        # _dequeue_and_enqueue
        n = k.shape[0]
        assert K % n == 0
        queue[:, ptr : ptr + n] = k.T
        ptr = (ptr + n) % K
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return losses, f_q, f_k, queue, ptr


@pytest.mark.parametrize(
    "case",
    [
        # MoCo v2 head, 2 BatchNorm groups per batch with shuffling BN (the single-GPU emulation of 2 GPUs)
        dict(head_layers=2, group=4, shuffle=True, symmetric=False),
        # MoCo v1 head, one group (a shuffle could change nothing), no shuffle
        dict(head_layers=1, group=8, shuffle=False, symmetric=False),
        # the CIFAR demo's symmetric loss, with shuffled groups
        dict(head_layers=2, group=4, shuffle=True, symmetric=True),
    ],
    ids=["v2-shuffled-groups", "v1-one-group", "symmetric"],
)
def test_three_steps_equal_the_official_algorithm(case):
    m, T = 0.9, 0.2
    method = make_moco(head_layers=case["head_layers"], queue=16 if not case["symmetric"] else 32,
                       momentum=m, temperature=T, shuffle_bn=case["shuffle"], bn_group_size=case["group"],
                       symmetric=case["symmetric"])
    views = [images(8, seed) for seed in range(STEPS)]
    ref_losses, f_q, f_k, ref_queue, ref_ptr = reference_moco(
        copy.deepcopy(method), views, head_layers=case["head_layers"], m=m, T=T, group=case["group"],
        shuffle=case["shuffle"], symmetric=case["symmetric"],
    )
    losses = train(method, method, views)

    torch.testing.assert_close(torch.stack(losses), torch.stack(ref_losses), **TOL)
    assert len(set(round(float(x), 6) for x in losses)) == STEPS  # the steps did change something
    for ours, ref in zip(method.encoder.parameters(), f_q.parameters()):
        torch.testing.assert_close(ours, ref, **TOL)
    for ours, ref in zip(method.target.parameters(), f_k.parameters()):
        torch.testing.assert_close(ours, ref, **TOL)
    torch.testing.assert_close(method.stores[0].queue, ref_queue.T, **TOL)
    assert int(method.stores[0].ptr) == ref_ptr
    # the key encoder trails the query encoder
    assert not torch.allclose(method.target.projector.layers[0][0].weight, method.encoder.projector.layers[0][0].weight)


def test_shuffled_groups_change_the_keys_and_one_group_does_not():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    x = torch.randn(8, 3)
    whole = net(x)
    torch.testing.assert_close(shuffled_forward(net, x, None), whole)  # one process, one group: no-op
    torch.testing.assert_close(grouped_forward(net, x, 8), whole)
    torch.manual_seed(1)
    shuffled = shuffled_forward(net, x, 4)
    torch.manual_seed(1)
    permutation = torch.randperm(8)
    expected = torch.cat([net(x[permutation[:4]]), net(x[permutation[4:]])])[torch.argsort(permutation)]
    torch.testing.assert_close(shuffled, expected)
    assert not torch.allclose(shuffled, grouped_forward(net, x, 4))  # other groups, other statistics
    with pytest.raises(SslcoreError, match="bn_group_size = 3 does not divide the batch of 8"):
        grouped_forward(net, x, 3)


def test_checks_views():
    method = make_moco()
    x1, _ = images(8, 0)
    with pytest.raises(SslcoreError, match="2 views per image, the batch has 1"):
        method(Batch(views=[x1], index=torch.arange(8)), StepInfo(0, 3, 3))


def test_in_batch_key_store_swaps_in():
    """MoCo no longer insists on a replicated queue: with ``in_batch`` keys each query's negatives are the
    other keys of the (global) batch, its positive its own key: cross-entropy of q . k^T / T with the diagonal."""
    doc = document(temperature=0.2, shuffle_bn=False)
    doc["key_store"] = {"kind": "in_batch"}
    torch.manual_seed(0)
    method = build_method(doc, host=host(), total_steps=STEPS, steps_per_epoch=STEPS)
    assert method.stores[0].sharding == "in_batch"
    x1, x2 = images(8, 0)
    # the loss of one forward, written out: the key encoder starts as a copy of the query encoder
    reference = copy.deepcopy(method)
    with torch.no_grad():
        k = F.normalize(reference.target(x2), dim=1)
    q = F.normalize(reference.encoder(x1), dim=1)
    expected = F.cross_entropy(q @ k.T / 0.2, torch.arange(8))
    losses = train(method, method, [(x1, x2)] + [images(8, seed) for seed in (1, 2)])
    torch.testing.assert_close(losses[0], expected.detach(), **TOL)
    assert all(math.isfinite(float(loss)) for loss in losses) and len(set(float(x) for x in losses)) == STEPS


def test_state_dict_round_trips_queue_and_key_encoder():
    method = make_moco()
    train(method, method, [images(8, 0)])
    clone = make_moco()
    clone.load_state_dict(method.state_dict())
    torch.testing.assert_close(clone.stores[0].queue, method.stores[0].queue)
    assert int(clone.stores[0].ptr) == int(method.stores[0].ptr) == 8
    for a, b in zip(clone.target.parameters(), method.target.parameters()):
        torch.testing.assert_close(a, b)
    assert method.backbone is method.encoder.backbone


def test_plugin_holds_no_forward_of_its_own():
    """The plugin is a config class, a build function and recipes: the method is the core's look-up method."""
    assert type(make_moco()) is LookupMethod
    assert type(make_moco(symmetric=True, bn_group_size=4)) is LookupMethod
    assert modules_defined_by(sslcore_plugin_moco) == []


# -- 2 processes with batch B == 1 process with batch 2B and BatchNorm groups of B -----------------------------
B = 4


def _worker(rank: int, world: int, views) -> dict:
    method = direct_moco(shuffle_bn=True)  # BatchNorm over each rank's batch, shuffled across ranks
    model = nn.parallel.DistributedDataParallel(method, broadcast_buffers=False)
    mine = slice(rank * B, (rank + 1) * B)
    losses = train(model, method, [(x1[mine], x2[mine]) for x1, x2 in views])
    return {
        "world": distributed.world_size(),
        "losses": torch.stack(losses),
        "params": [p.detach() for p in method.encoder.parameters()],
        "key_params": [p.detach() for p in method.target.parameters()],
        "queue": method.stores[0].queue.clone(),
        "ptr": int(method.stores[0].ptr),
    }


@pytest.mark.distributed
def test_two_processes_equal_one_process_with_the_global_batch():
    views = [images(2 * B, seed) for seed in range(STEPS)]
    ranks = run_distributed(_worker, views, world_size=2)
    assert [r["world"] for r in ranks] == [2, 2]

    single = direct_moco(shuffle_bn=True, bn_group_size=B)
    assert [p.shape for p in single.parameters()] == [p.shape for p in make_moco().parameters()]
    assert single.design == make_moco(shuffle_bn=True, bn_group_size=B).design  # what build_moco builds
    losses = torch.stack(train(single, single, views))
    torch.testing.assert_close((ranks[0]["losses"] + ranks[1]["losses"]) / 2, losses, **TOL)
    assert not torch.allclose(ranks[0]["losses"], ranks[1]["losses"])  # the ranks saw different samples
    for r in ranks:
        # the queue is replicated: every rank holds the keys of both, in global batch order
        torch.testing.assert_close(r["queue"], single.stores[0].queue, **TOL)
        assert r["ptr"] == int(single.stores[0].ptr)
        for ours, ref in zip(r["params"], single.encoder.parameters()):
            torch.testing.assert_close(ours, ref.detach(), **TOL)
        for ours, ref in zip(r["key_params"], single.target.parameters()):
            torch.testing.assert_close(ours, ref.detach(), **TOL)


# -- recipes ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mocov1_resnet50", "mocov2_resnet50", "moco_cifar10", "moco_smoke"])
def test_recipes_resolve(name):
    recipe = resolve(name, PluginHost(autoload=False, extra_plugins=[("moco", moco_plugin)]))
    assert recipe.components["method"].kind == "moco"
    assert recipe.run.sync_batchnorm is False  # MoCo's BatchNorm is per group, by design


def test_paper_recipes_carry_the_papers_numbers():
    plugins = PluginHost(autoload=False, extra_plugins=[("moco", moco_plugin)])
    v1, v2 = resolve("mocov1_resnet50", plugins), resolve("mocov2_resnet50", plugins)
    for recipe in (v1, v2):
        assert recipe.run.batch_size == 256 and recipe.run.epochs == 200
        assert recipe.optimizer.kind == "sgd" and recipe.optimizer.lr(256) == 0.03
        assert recipe.optimizer.weight_decay == 1e-4 and recipe.optimizer.momentum == 0.9
        assert recipe.components["key_store"].config.size == 65536
        assert recipe.components["target_updater"].config.base_momentum == 0.999
        assert recipe.components["method"].config.bn_group_size == 32  # 8 GPUs x 32
    assert v1.components["loss"].config.temperature == 0.07
    assert v2.components["loss"].config.temperature == 0.2
    assert v1.components["heads.projector"].config.num_layers == 1
    assert v2.components["heads.projector"].config.hidden_dim == 2048
    assert v2.components["views"].kind == "mocov2" and v1.components["views"].kind == "mocov1"


def test_smoke_recipe_builds_and_steps():
    plugins = PluginHost(autoload=False, extra_plugins=[("moco", moco_plugin)])
    recipe = resolve("moco_smoke", plugins)
    doc = recipe.to_dict()
    torch.manual_seed(0)
    method = build_method({k: doc[k] for k in ("method", "backbone", "heads", "key_store", "target_updater", "loss")},
                          host=plugins)
    x = torch.randn(recipe.run.batch_size, 3, 32, 32)
    out = method(Batch(views=[x, x.flip(3)], index=torch.arange(x.shape[0])), StepInfo(0, 4, 4))
    out.loss.backward()
    assert torch.isfinite(out.loss) and method.encoder.projector.layers[0][0].weight.grad is not None


def test_canonical_copy_at_the_repository_root_is_identical():
    root = Path(__file__).resolve().parents[3] / "recipes" / "mocov2_resnet50.toml"
    if not root.is_file():
        pytest.skip("runs inside the sslcore repository, which keeps canonical copies in recipes/")
    assert root.read_text() == (files("sslcore_plugin_moco") / "recipes" / "mocov2_resnet50.toml").read_text()


def test_engine_trains_the_smoke_recipe(tmp_path):
    from sslcore.engine.trainer import Trainer

    plugins = PluginHost(autoload=False, extra_plugins=[("moco", moco_plugin)])
    recipe = resolve("moco_smoke", plugins, [f"run.output_dir={tmp_path}", "run.progress=false"])
    summary = Trainer(recipe, plugins).fit()
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    assert 0 <= summary["knn_top1"] <= 100
    assert (tmp_path / "moco_smoke" / "backbone.safetensors").is_file()
