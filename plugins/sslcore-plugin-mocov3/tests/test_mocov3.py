"""MoCo v3: reference steps against the official algorithm, 2 processes, recipes."""

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

import sslcore_plugin_mocov3
import sslcore_plugin_mocov3.plugin as mocov3_plugin
from sslcore import distributed
from sslcore.components.heads import MLPHead, MLPHeadConfig
from sslcore.components.key_stores import InBatchKeys
from sslcore.components.losses import MoCoV3ContrastiveLoss
from sslcore.components.target_updaters import EMAUpdater
from sslcore.errors import SslcoreError
from sslcore.lookup import LookupDesign, LookupMethod
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

WIDTH, HIDDEN, DIM = 6, 10, 4  # backbone width, MLP hidden width, output width
STEPS = 3
M0, T = 0.9, 0.2
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, which only contend with parallel test runs."""
    with single_thread():
        yield


def host() -> PluginHost:
    return tiny_host("mocov3", mocov3_plugin)


def mlp(num_layers: int, out_dim: int = DIM) -> dict:
    """MoCo v3's ``_build_mlp`` with its last BatchNorm (ViT projector and predictor)."""
    return {"kind": "mlp", "num_layers": num_layers, "hidden_dim": HIDDEN, "out_dim": out_dim,
            "batch_norm": True, "last_batch_norm": True}


def document() -> dict:
    return {
        "method": {"kind": "mocov3"},
        "backbone": {"kind": "tiny", "width": WIDTH},
        "heads": {"projector": mlp(3), "predictor": mlp(2)},
        "key_store": {"kind": "in_batch", "stop_gradient": True},
        "target_updater": {"kind": "ema", "base_momentum": M0, "schedule": "cosine", "buffers": "own"},
        "loss": {"kind": "mocov3_contrastive", "temperature": T},
    }


def make_mocov3(doc: dict | None = None) -> LookupMethod:
    torch.manual_seed(0)
    return build_method(doc or document(), host=host(), total_steps=STEPS, steps_per_epoch=STEPS)


def images(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 8, 8, generator=generator), torch.randn(batch, 3, 8, 8, generator=generator)


def adamw(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=1e-2, weight_decay=0.1)


def train(model: nn.Module, method: LookupMethod, views) -> tuple[list[torch.Tensor], list[float]]:
    """The engine's loop, forward through ``model`` (possibly DDP); returns the losses and the logged momenta."""
    optimizer = adamw(method.parameters())
    losses, momenta = [], []
    for t, (x1, x2) in enumerate(views):
        out = training_step(method, optimizer, batch_of(x1, x2), StepInfo(t, STEPS, STEPS), model=model)
        losses.append(out.loss.detach())
        momenta.append(out.logs["momentum"])
    return losses, momenta


# -- the reference: official moco-v3 builder.py / main_moco.py, written out plainly ------------------------------
def build_mlp(num_layers, input_dim, mlp_dim, output_dim):
    """moco/builder.py ``_build_mlp`` (last_bn=True)."""
    layers = []
    for layer in range(num_layers):
        dim1 = input_dim if layer == 0 else mlp_dim
        dim2 = output_dim if layer == num_layers - 1 else mlp_dim
        layers.append(nn.Linear(dim1, dim2, bias=False))
        if layer < num_layers - 1:
            layers += [nn.BatchNorm1d(dim2), nn.ReLU()]
        else:
            layers.append(nn.BatchNorm1d(dim2, affine=False))
    return nn.Sequential(*layers)


class ReferenceEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, WIDTH, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(WIDTH)
        self.head = build_mlp(3, WIDTH, HIDDEN, DIM)

    def forward(self, x):
        return self.head(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def reference_mocov3(method: LookupMethod, views):
    base_encoder, predictor = ReferenceEncoder(), build_mlp(2, DIM, HIDDEN, DIM)
    copy_state(base_encoder, method.encoder)
    copy_state(predictor, method.predictor)
    momentum_encoder = copy.deepcopy(base_encoder)  # param_m.data.copy_(param_b.data)
    optimizer = adamw(list(base_encoder.parameters()) + list(predictor.parameters()))

    def contrastive_loss(q, k):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = torch.einsum("nc,mc->nm", q, k) / T
        return F.cross_entropy(logits, torch.arange(q.shape[0])) * (2 * T)

    losses, momenta = [], []
    iters_per_epoch, epochs = 1, STEPS  # one iteration per epoch: epoch + i / iters_per_epoch = step
    for epoch, (x1, x2) in enumerate(views):
        moco_m = 1.0 - 0.5 * (1.0 + math.cos(math.pi * (epoch + 0 / iters_per_epoch) / epochs)) * (1.0 - M0)
        q1 = predictor(base_encoder(x1))
        q2 = predictor(base_encoder(x2))
        with torch.no_grad():
            for param_b, param_m in zip(base_encoder.parameters(), momentum_encoder.parameters()):
                param_m.data = param_m.data * moco_m + param_b.data * (1.0 - moco_m)
            k1 = momentum_encoder(x1)
            k2 = momentum_encoder(x2)
        loss = contrastive_loss(q1, k2) + contrastive_loss(q2, k1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        momenta.append(moco_m)
    return losses, momenta, base_encoder, predictor, momentum_encoder


def test_three_steps_equal_the_official_algorithm():
    method = make_mocov3()
    views = [images(8, seed) for seed in range(STEPS)]
    ref_losses, ref_momenta, base_encoder, predictor, momentum_encoder = reference_mocov3(method, views)
    losses, momenta = train(method, method, views)

    torch.testing.assert_close(torch.stack(losses), torch.stack(ref_losses), **TOL)
    assert momenta == pytest.approx(ref_momenta) and momenta[0] == pytest.approx(M0)
    for ours, ref in zip(method.encoder.parameters(), base_encoder.parameters()):
        torch.testing.assert_close(ours, ref, **TOL)
    for ours, ref in zip(method.predictor.parameters(), predictor.parameters()):
        torch.testing.assert_close(ours, ref, **TOL)
    for ours, ref in zip(method.target.parameters(), momentum_encoder.parameters()):
        torch.testing.assert_close(ours, ref, **TOL)
    assert not torch.allclose(method.target.backbone.net[0].weight, method.encoder.backbone.net[0].weight)
    assert method.backbone is method.encoder.backbone


def test_checks_views_and_widths():
    method = make_mocov3()
    x1, _ = images(8, 0)
    with pytest.raises(SslcoreError, match="2 views per image, the batch has 1"):
        method(Batch(views=[x1], index=torch.arange(8)), StepInfo(0, 3, 3))
    doc = document()
    doc["heads"]["predictor"] = mlp(2, out_dim=DIM + 1)
    with pytest.raises(SslcoreError, match="predictor gives 5 dimensions but the projector 4"):
        make_mocov3(doc)


def test_queue_key_store_swaps_in():
    """MoCo v3 no longer insists on the global batch's keys: with a queue, each query's positive is its own
    momentum key and the negatives are the queue (as it was before the step), both directions enqueued."""
    doc = document()
    doc["key_store"] = {"kind": "queue", "size": 16}
    method = make_mocov3(doc)
    queue = method.stores[0]
    views = [images(8, seed) for seed in range(STEPS)]
    # the loss of the first forward, written out: the momentum encoder starts as a copy of the encoder
    reference = copy.deepcopy(method)
    bank = queue.queue.detach().clone()

    def ctr(q, k):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ bank.T], dim=1) / T
        return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long)) * (2 * T)

    x1, x2 = views[0]
    q1, q2 = reference.predictor(reference.encoder(x1)), reference.predictor(reference.encoder(x2))
    with torch.no_grad():
        k1, k2 = reference.target(x1), reference.target(x2)
    expected = ctr(q1, k2) + ctr(q2, k1)
    losses, _ = train(method, method, views)
    torch.testing.assert_close(losses[0], expected.detach(), **TOL)
    assert all(math.isfinite(float(loss)) for loss in losses) and len(set(float(x) for x in losses)) == STEPS
    assert int(queue.count) == 16 and int(queue.ptr) == (STEPS * 16) % 16  # both views' keys, every step


def test_plugin_holds_no_forward_of_its_own():
    """The plugin is a config class, a build function and recipes: the method is the core's look-up method."""
    assert type(make_mocov3()) is LookupMethod
    assert modules_defined_by(sslcore_plugin_mocov3) == []


# -- 2 processes with batch B == 1 process with batch 2B --------------------------------------------------------
# BatchNorm statistics are per process unless SyncBatchNorm (which needs GPUs) joins them, so this check uses
# networks without BatchNorm: it tests the global-batch keys, the loss offsets and the gradient averaging.
B = 4


#: The design ``build_mocov3`` gives (checked against it in the 2-process test).
MOCOV3_DESIGN = LookupDesign(pairs=((0, 1), (1, 0)), target_when="before_forward", predictor=True)


def bn_free_mocov3() -> LookupMethod:
    torch.manual_seed(0)
    head = MLPHeadConfig(num_layers=2, hidden_dim=HIDDEN, out_dim=DIM)
    return LookupMethod(
        "mocov3", MOCOV3_DESIGN,
        encoder=nn.Sequential(OrderedDict(
            backbone=TinyNet(TinyConfig(width=WIDTH, batch_norm=False)), projector=MLPHead(head, WIDTH)
        )),
        predictor=MLPHead(head, DIM),
        updater=EMAUpdater(base_momentum=M0, schedule="cosine", buffers="own", total_steps=STEPS),
        stores=[InBatchKeys(DIM, stop_gradient=True)],
        loss=MoCoV3ContrastiveLoss(temperature=T),
        combination="[loss] 'mocov3_contrastive' and [key_store] 'in_batch'",
    )


def _worker(rank: int, world: int, views) -> dict:
    method = bn_free_mocov3()
    model = nn.parallel.DistributedDataParallel(method, broadcast_buffers=False)
    mine = slice(rank * B, (rank + 1) * B)
    losses, _ = train(model, method, [(x1[mine], x2[mine]) for x1, x2 in views])
    return {
        "world": distributed.world_size(),
        "losses": torch.stack(losses),
        "params": [p.detach() for p in method.parameters()],
    }


@pytest.mark.distributed
def test_two_processes_equal_one_process_with_the_global_batch():
    views = [images(2 * B, seed) for seed in range(STEPS)]
    ranks = run_distributed(_worker, views, world_size=2)
    assert [r["world"] for r in ranks] == [2, 2]

    single = bn_free_mocov3()
    assert single.design == make_mocov3().design  # what build_mocov3 builds
    losses, _ = train(single, single, views)
    torch.testing.assert_close((ranks[0]["losses"] + ranks[1]["losses"]) / 2, torch.stack(losses), **TOL)
    assert not torch.allclose(ranks[0]["losses"], ranks[1]["losses"])  # the ranks saw different samples
    names = [name for name, _ in single.named_parameters()]
    assert any(name.startswith("target.") for name in names)
    for r in ranks:
        for name, ours, ref in zip(names, r["params"], single.parameters()):
            torch.testing.assert_close(ours, ref.detach(), **TOL, msg=lambda text, name=name: f"{name}: {text}")
    # with only the local keys the loss would differ: the global batch matters
    local = bn_free_mocov3()
    local_losses, _ = train(local, local, [(x1[:B], x2[:B]) for x1, x2 in views])
    assert not torch.allclose(torch.stack(local_losses), ranks[0]["losses"], atol=1e-4)


# -- recipes ---------------------------------------------------------------------------------------------------
def plugin_host() -> PluginHost:
    return PluginHost(autoload=False, extra_plugins=[("mocov3", mocov3_plugin)])


@pytest.mark.parametrize("name", ["mocov3_vit", "mocov3_resnet50", "mocov3_cifar10", "mocov3_smoke"])
def test_recipes_resolve(name):
    recipe = resolve(name, plugin_host())
    assert recipe.components["method"].kind == "mocov3"
    updater = recipe.components["target_updater"].config
    assert (updater.schedule, updater.final_momentum, updater.buffers) == ("cosine", 1.0, "own")


def test_paper_recipes_carry_the_official_numbers():
    plugins = plugin_host()
    vit, r50 = resolve("mocov3_vit", plugins), resolve("mocov3_resnet50", plugins)
    assert vit.run.batch_size == r50.run.batch_size == 4096
    assert (vit.run.epochs, vit.schedule.warmup_epochs) == (300, 40)
    assert (r50.run.epochs, r50.schedule.warmup_epochs) == (100, 10)
    assert vit.optimizer.kind == "adamw" and vit.optimizer.lr(4096) == pytest.approx(1.5e-4 * 16)
    assert vit.optimizer.weight_decay == 0.1
    assert r50.optimizer.kind == "lars" and r50.optimizer.lr(4096) == pytest.approx(0.6 * 16)
    assert r50.optimizer.weight_decay == 1e-6
    assert vit.components["loss"].config.temperature == 0.2 and r50.components["loss"].config.temperature == 1.0
    backbone = vit.components["backbone"].config
    assert backbone.frozen_patch_embed and backbone.sincos_pos_embed
    assert vit.components["heads.projector"].config.num_layers == 3
    assert r50.components["heads.projector"].config.num_layers == 2
    assert not r50.components["heads.predictor"].config.last_batch_norm
    assert vit.components["heads.predictor"].config.last_batch_norm
    assert vit.components["views"].config.scale == (0.08, 1.0) and r50.components["views"].config.scale == (0.2, 1.0)


def test_smoke_recipe_builds_a_vit_and_steps():
    plugins = plugin_host()
    recipe = resolve("mocov3_smoke", plugins)
    doc = recipe.to_dict()
    torch.manual_seed(0)
    method = build_method({k: doc[k] for k in ("method", "backbone", "heads", "key_store", "target_updater", "loss")},
                          host=plugins, total_steps=4, steps_per_epoch=4)
    x = torch.randn(recipe.run.batch_size, 3, 32, 32)
    out = method(Batch(views=[x, x.flip(3)], index=torch.arange(x.shape[0])), StepInfo(0, 4, 4))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.logs["momentum"] == pytest.approx(0.99)
    patch = method.backbone.patch_embed.proj.weight
    assert not patch.requires_grad and patch.grad is None  # MoCo v3's frozen random patch projection
    assert method.backbone.blocks[0].attn.qkv.weight.grad is not None


def test_canonical_copy_at_the_repository_root_is_identical():
    root = Path(__file__).resolve().parents[3] / "recipes" / "mocov3_vit.toml"
    if not root.is_file():
        pytest.skip("runs inside the sslcore repository, which keeps canonical copies in recipes/")
    assert root.read_text() == (files("sslcore_plugin_mocov3") / "recipes" / "mocov3_vit.toml").read_text()


def test_engine_trains_the_smoke_recipe(tmp_path):
    from sslcore.engine.trainer import Trainer

    plugins = PluginHost(autoload=False, extra_plugins=[("mocov3", mocov3_plugin)])
    recipe = resolve("mocov3_smoke", plugins, [f"run.output_dir={tmp_path}", "run.progress=false"])
    summary = Trainer(recipe, plugins).fit()
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    assert 0 <= summary["knn_top1"] <= 100
    assert (tmp_path / "mocov3_smoke" / "backbone.safetensors").is_file()
