"""SupCon: three training steps against the official losses.py / SupConResNet written out here, the queue
extension against Eq. 2 written as loops, the recipes, the engine, and 2 processes x B against 1 process x 2B."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sslcore_plugin_supcon.plugin as supcon_plugin
from sslcore import distributed
from sslcore.components.heads import MLPHead, MLPHeadConfig
from sslcore.components.key_stores import InBatchKeys, Queue
from sslcore.components.losses import SupConLoss
from sslcore.errors import SslcoreError
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import TinyConfig, TinyNet, build_method, build_recipe, run_distributed, tiny_host, training_step
from sslcore_plugin_supcon import SupCon

BATCH = 4  # global, images
LABELS = torch.tensor([0, 1, 0, 2])  # class 2 has one image: its only positive is its own other view
TEMPERATURE, BASE_TEMPERATURE = 0.1, 0.07
SGD = dict(lr=0.05, momentum=0.9, weight_decay=1e-4)
QUEUE_SIZE = 12


@functools.cache
def make_host() -> PluginHost:
    return tiny_host("supcon", supcon_plugin)


DOCUMENT = {
    "backbone": {"kind": "tiny", "width": 6, "batch_norm": False},
    "heads": {"projector": {"kind": "mlp", "num_layers": 2, "hidden_dim": 6, "out_dim": 5}},
    "key_store": {"kind": "in_batch", "stop_gradient": False},
    "loss": {"kind": "supcon", "temperature": TEMPERATURE, "base_temperature": BASE_TEMPERATURE},
    "method": {"kind": "supcon"},
}
QUEUE = {"kind": "queue", "size": QUEUE_SIZE, "store_labels": True}


def build(**tables):
    return build_method({**DOCUMENT, **tables}, host=make_host())


def step_data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 3, 8, 8, generator=generator), torch.randn(BATCH, 3, 8, 8, generator=generator))
            for _ in range(3)]


# -- the official computation (losses.py SupConLoss, contrast_mode 'all'; main_supcon.py train), written out --
def official_supcon_loss(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    batch_size = features.shape[0]
    labels = labels.contiguous().view(-1, 1)
    mask = torch.eq(labels, labels.T).float()
    contrast_count = features.shape[1]
    contrast_feature = torch.cat(torch.unbind(features, dim=1), dim=0)
    anchor_feature, anchor_count = contrast_feature, contrast_count
    anchor_dot_contrast = torch.div(torch.matmul(anchor_feature, contrast_feature.T), TEMPERATURE)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    mask = mask.repeat(anchor_count, contrast_count)
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(batch_size * anchor_count).view(-1, 1), 0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True) + 1e-9)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    loss = -(TEMPERATURE / BASE_TEMPERATURE) * mean_log_prob_pos
    return loss.view(anchor_count, batch_size).mean()


def official_features(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """main_supcon.py: one forward of cat(view 1, view 2); SupConResNet normalises the head's output."""
    features = F.normalize(model(torch.cat([x1, x2], dim=0)), dim=1)
    f1, f2 = torch.split(features, [x1.shape[0], x1.shape[0]], dim=0)
    return torch.cat([f1.unsqueeze(1), f2.unsqueeze(1)], dim=1)


def test_three_steps_match_the_official_code():
    torch.manual_seed(0)
    method = build(backbone={**DOCUMENT["backbone"], "batch_norm": True})  # BatchNorm over both views, as the official
    reference = nn.Sequential(copy.deepcopy(method.backbone), copy.deepcopy(method.projector))
    initial = [p.detach().clone() for p in method.parameters()]
    optimizer = torch.optim.SGD(method.parameters(), **SGD)
    reference_optimizer = torch.optim.SGD(reference.parameters(), **SGD)
    for step, (x1, x2) in enumerate(step_data()):
        batch = Batch(views=[x1, x2], index=torch.arange(BATCH), label=LABELS)
        output = training_step(method, optimizer, batch, StepInfo(step, 3, 3))

        expected = official_supcon_loss(official_features(reference, x1, x2), LABELS)
        reference_optimizer.zero_grad()
        expected.backward()
        reference_optimizer.step()

        torch.testing.assert_close(output.loss, expected, rtol=1e-5, atol=1e-6)
        for got, want in zip(method.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(method.buffers(), reference.buffers(), strict=True):  # BatchNorm running statistics
        torch.testing.assert_close(got, want)
    assert all(not torch.allclose(p, p0) for p, p0 in zip(method.parameters(), initial))


# -- the queue extension: Eq. 2 (L^sup_out) with extra labelled keys, written as loops ------------------------
def loop_supcon(views: list[torch.Tensor], labels: torch.Tensor, keys: list[torch.Tensor], key_labels: list[int]):
    """Anchors: every view of every image; contrast: every other view, then the stored keys (constants)."""
    entries = [(view[b], int(labels[b])) for b in range(labels.shape[0]) for view in views]
    entries += [(key, label) for key, label in zip(keys, key_labels)]
    total = 0.0
    anchors = len(views) * labels.shape[0]
    for i in range(anchors):
        z_i, label_i = entries[i]
        others = [(z, label) for j, (z, label) in enumerate(entries) if j != i]
        log_norm = torch.logsumexp(torch.stack([z_i @ z / TEMPERATURE for z, _ in others]), dim=0)
        positives = [z_i @ z / TEMPERATURE - log_norm for z, label in others if label == label_i]
        total = total + sum(positives) / len(positives)
    return -(TEMPERATURE / BASE_TEMPERATURE) * total / anchors


def test_queue_extension_matches_equation_2_with_stored_keys():
    torch.manual_seed(0)
    method = build(key_store=QUEUE)
    reference = nn.Sequential(copy.deepcopy(method.backbone), copy.deepcopy(method.projector))
    optimizer = torch.optim.SGD(method.parameters(), **SGD)
    reference_optimizer = torch.optim.SGD(reference.parameters(), **SGD)
    keys: list[torch.Tensor] = []
    key_labels: list[int] = []
    for step, (x1, x2) in enumerate(step_data()):
        batch = Batch(views=[x1, x2], index=torch.arange(BATCH), label=LABELS)
        output = training_step(method, optimizer, batch, StepInfo(step, 3, 3))

        z = F.normalize(reference(torch.cat([x1, x2])), dim=1)
        z1, z2 = z[:BATCH], z[BATCH:]
        expected = loop_supcon([z1, z2], LABELS, keys, key_labels)
        reference_optimizer.zero_grad()
        expected.backward()
        reference_optimizer.step()
        for b in range(BATCH):  # enqueue every view, sample by sample, keeping the last QUEUE_SIZE
            keys += [z1[b].detach(), z2[b].detach()]
            key_labels += [int(LABELS[b])] * 2
        keys, key_labels = keys[-QUEUE_SIZE:], key_labels[-QUEUE_SIZE:]

        torch.testing.assert_close(output.loss, expected, rtol=1e-5, atol=1e-6)
        for got, want in zip(method.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    stored = method.key_store.labels()
    assert (stored >= 0).all() and sorted(stored.tolist()) == sorted(key_labels)
    stored_keys = method.key_store.keys()
    for key in keys:
        assert torch.isclose(stored_keys, key, rtol=1e-5, atol=1e-6).all(dim=1).any()


def test_rejects_missing_labels_views_and_components():
    torch.manual_seed(0)
    method = build()
    x1, x2 = step_data()[0]
    with pytest.raises(SslcoreError, match="needs class labels"):
        method(Batch(views=[x1, x2], index=torch.arange(BATCH)), StepInfo(0, 1, 1))
    with pytest.raises(SslcoreError, match="one shape"):
        method(Batch(views=[x1, x2[:, :, :4, :4]], index=torch.arange(BATCH), label=LABELS), StepInfo(0, 1, 1))
    with pytest.raises(SslcoreError, match="stop_gradient = false"):
        build(key_store={"kind": "in_batch", "stop_gradient": True})
    with pytest.raises(SslcoreError, match="store_labels = true"):
        build(key_store={"kind": "queue", "size": 16})
    with pytest.raises(SslcoreError, match="global batch"):
        build(key_store={"kind": "memory_bank"})
    with pytest.raises(SslcoreError, match="supervised contrastive loss"):
        build(loss={"kind": "ntxent"})


def test_recipes_resolve_and_smoke_builds():
    host = make_host()
    for name in ("supcon_resnet50", "supcon_cifar10"):
        recipe = resolve(name, host)
        assert recipe.components["loss"].config.temperature == 0.1
        assert recipe.components["loss"].config.base_temperature == 0.07
        assert (recipe.run.batch_size, recipe.optimizer.base_lr, recipe.optimizer.weight_decay) == (1024, 0.5, 1e-4)
        assert recipe.schedule.final_lr_ratio == 0.001 and recipe.schedule.warmup_epochs == 10
        projector = recipe.components["heads.projector"].config
        assert (projector.num_layers, projector.out_dim, projector.batch_norm) == (2, 128, False)

    torch.manual_seed(0)
    _, method = build_recipe("supcon_smoke", host, num_samples=64, total_steps=4, steps_per_epoch=4)
    views = [torch.randn(16, 3, 32, 32), torch.randn(16, 3, 32, 32)]
    batch = Batch(views=views, index=torch.arange(16), label=torch.arange(16) % 3)
    loss = method(batch, StepInfo(0, 4, 4)).loss
    assert loss.ndim == 0 and math.isfinite(loss.item())


def test_engine_trains_the_smoke_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sslcore.engine.trainer import train_from_recipe  # imported here: the gloo workers never need it

    summary = train_from_recipe("supcon_smoke", [f"run.output_dir={tmp_path}"], host=make_host())
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    assert 0.0 <= summary["knn_top1"] <= 100.0
    assert (tmp_path / "supcon_smoke" / "backbone.safetensors").is_file()


# -- 2 processes x 2 images == 1 process x 4 images, without and with the queue -------------------------------
def build_direct(queue: bool) -> SupCon:
    """The method of DOCUMENT (with QUEUE), built from its classes: the gloo workers skip the plugin host's imports."""
    projector = MLPHead(MLPHeadConfig(num_layers=2, hidden_dim=6, out_dim=5), in_dim=6)
    key_store = Queue(5, QUEUE_SIZE, store_labels=True) if queue else InBatchKeys(5)
    backbone = TinyNet(TinyConfig(width=6, batch_norm=False))
    return SupCon(backbone, projector, key_store, SupConLoss(TEMPERATURE, BASE_TEMPERATURE))


def train(rank: int, world: int) -> dict:
    """Three SGD steps on this rank's images of the global batch, for in-batch keys and for the queue."""
    local = BATCH // world
    rows = slice(rank * local, (rank + 1) * local)
    out: dict = {"world": distributed.world_size()}
    for name in ("in_batch", "queue"):
        torch.manual_seed(0)
        method = build_direct(queue=name == "queue")
        model = torch.nn.parallel.DistributedDataParallel(method, broadcast_buffers=False) if world > 1 else method
        optimizer = torch.optim.SGD(method.parameters(), **SGD)
        losses = []
        for step, (x1, x2) in enumerate(step_data()):
            batch = Batch(views=[x1[rows], x2[rows]], index=torch.arange(BATCH)[rows], label=LABELS[rows])
            output = training_step(method, optimizer, batch, StepInfo(step, 3, 3), model=model)
            losses.append(output.loss.detach())
        out[name] = {
            "losses": torch.stack(losses),
            "params": [p.detach().clone() for p in method.parameters()],
            "buffers": {k: v.clone() for k, v in method.key_store.state_dict().items()},
        }
    return out


@pytest.mark.distributed
def test_two_processes_equal_one_process_with_the_global_batch():
    shapes = {name: tensor.shape for name, tensor in build(key_store=QUEUE).state_dict().items()}
    assert shapes == {name: tensor.shape for name, tensor in build_direct(queue=True).state_dict().items()}
    ranks = run_distributed(train, world_size=2)
    single = train(0, 1)
    assert [r["world"] for r in ranks] == [2, 2]
    for name in ("in_batch", "queue"):
        mean_loss = (ranks[0][name]["losses"] + ranks[1][name]["losses"]) / 2
        torch.testing.assert_close(mean_loss, single[name]["losses"], rtol=1e-5, atol=1e-6)
        for result in ranks:
            for got, want in zip(result[name]["params"], single[name]["params"], strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
            for key, want in single[name]["buffers"].items():
                torch.testing.assert_close(result[name]["buffers"][key], want, rtol=1e-5, atol=1e-6)
    assert int(single["queue"]["buffers"]["count"]) == QUEUE_SIZE
