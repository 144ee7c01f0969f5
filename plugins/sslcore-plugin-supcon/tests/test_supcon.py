"""SupCon: three training steps against the official losses.py / SupConResNet written out here, the queue
extension against Eq. 2 written as loops, the recipes, the engine, and 2 processes x B against 1 process x 2B."""

from __future__ import annotations

import copy
import functools
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sslcore_plugin_supcon
import sslcore_plugin_supcon.plugin as supcon_plugin
from sslcore import distributed
from sslcore.components.heads import MLPHead, MLPHeadConfig
from sslcore.components.key_stores import InBatchKeys, Queue
from sslcore.components.losses import SupConLoss
from sslcore.errors import SslcoreError
from sslcore.lookup import LookupDesign, LookupMethod
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import (
    TinyConfig,
    TinyNet,
    build_method,
    build_recipe,
    modules_defined_by,
    run_distributed,
    tiny_host,
    training_step,
)

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
    reference = nn.Sequential(copy.deepcopy(method.backbone), copy.deepcopy(method.encoder.projector))
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
    reference = nn.Sequential(copy.deepcopy(method.backbone), copy.deepcopy(method.encoder.projector))
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
        for view in (z1, z2):  # enqueue every view, view-major (as the anchors), keeping the last QUEUE_SIZE
            keys += [view[b].detach() for b in range(BATCH)]
            key_labels += [int(label) for label in LABELS]
        keys, key_labels = keys[-QUEUE_SIZE:], key_labels[-QUEUE_SIZE:]

        torch.testing.assert_close(output.loss, expected, rtol=1e-5, atol=1e-6)
        for got, want in zip(method.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    queue = method.stores[1]
    assert isinstance(method.stores[0], InBatchKeys) and isinstance(queue, Queue)  # the global batch, then the queue
    assert int(queue.count) == QUEUE_SIZE
    stored = queue.queue_labels
    assert (stored >= 0).all() and sorted(stored.tolist()) == sorted(key_labels)
    stored_keys = queue.queue
    for key in keys:
        assert torch.isclose(stored_keys, key, rtol=1e-5, atol=1e-6).all(dim=1).any()


def test_rejects_missing_labels_and_views():
    torch.manual_seed(0)
    method = build()
    x1, x2 = step_data()[0]
    with pytest.raises(SslcoreError, match="needs class labels"):
        method(Batch(views=[x1, x2], index=torch.arange(BATCH)), StepInfo(0, 1, 1))
    with pytest.raises(SslcoreError, match="one shape"):
        method(Batch(views=[x1, x2[:, :, :4, :4]], index=torch.arange(BATCH), label=LABELS), StepInfo(0, 1, 1))


@pytest.mark.parametrize(
    ("tables", "kind"),
    [
        ({"key_store": {"kind": "queue", "size": 16}}, "queue"),  # keys without labels: no positives to find
        ({"key_store": {"kind": "memory_bank"}}, "memory_bank"),  # per-query negatives, not a shared contrast set
    ],
)
def test_a_key_store_that_does_not_fit_stops_the_first_step_with_one_line(tables, kind):
    # Components are swappable wherever the mathematics allows; these combinations are not, and the first step
    # says so in one line naming both tables (the build itself no longer guards them).
    torch.manual_seed(0)
    method = build(**tables)
    x1, x2 = step_data()[0]
    batch = Batch(views=[x1, x2], index=torch.arange(BATCH), label=LABELS)
    with pytest.raises(SslcoreError, match=rf"\[loss\] 'supcon' and \[key_store\] '{kind}' do not fit") as error:
        method(batch, StepInfo(0, 1, 1))
    assert "\n" not in str(error.value)


def test_in_batch_keys_without_gradient_train_with_the_same_loss():
    # No longer rejected: gathering the contrast set without gradient trains through the anchors only. The
    # forward (the loss value) is that of the paper's setting; the gradients differ.
    x1, x2 = step_data()[0]
    batch = Batch(views=[x1, x2], index=torch.arange(BATCH), label=LABELS)
    torch.manual_seed(0)
    paper = build()
    torch.manual_seed(0)
    constant_keys = build(key_store={"kind": "in_batch", "stop_gradient": True})
    losses, grads = [], []
    for method in (paper, constant_keys):
        loss = method(batch, StepInfo(0, 1, 1)).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append(method.backbone.net[0].weight.grad.clone())
    torch.testing.assert_close(losses[1], losses[0])
    assert not torch.allclose(grads[1], grads[0])


def test_another_contrastive_loss_trains_on_the_supcon_pipeline():
    # No longer rejected: NT-Xent reads the same in-batch keys (each anchor's positive is its other view).
    torch.manual_seed(0)
    method = build(loss={"kind": "ntxent"})
    optimizer = torch.optim.SGD(method.parameters(), **SGD)
    for step, (x1, x2) in enumerate(step_data()[:2]):
        batch = Batch(views=[x1, x2], index=torch.arange(BATCH), label=LABELS)
        loss = training_step(method, optimizer, batch, StepInfo(step, 3, 3)).loss
        assert math.isfinite(loss.item())


def test_plugin_holds_no_forward_of_its_own():
    """The plugin is a config class, a build function and recipes: the method is the core's look-up method."""
    assert type(build()) is LookupMethod
    assert type(build(key_store=QUEUE)) is LookupMethod
    assert modules_defined_by(sslcore_plugin_supcon) == []


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
#: supcon's look-up design (build_supcon's); the 2-process test checks it is the one the plugin builds.
SUPCON_DESIGN = LookupDesign(
    pairs=((0, 1), (1, 0)), joint=True, keys_from="online", one_pass=True, normalize=True, labels=True
)


def build_direct(queue: bool) -> LookupMethod:
    """The method of DOCUMENT (with QUEUE), built from its classes: the gloo workers skip the plugin host's imports."""
    projector = MLPHead(MLPHeadConfig(num_layers=2, hidden_dim=6, out_dim=5), in_dim=6)
    stores = [InBatchKeys(5), Queue(5, QUEUE_SIZE, store_labels=True)] if queue else [InBatchKeys(5)]
    backbone = TinyNet(TinyConfig(width=6, batch_norm=False))
    encoder = nn.Sequential(OrderedDict(backbone=backbone, projector=projector))
    return LookupMethod(
        "supcon", SUPCON_DESIGN, encoder=encoder, predictor=None, updater=None, stores=stores,
        loss=SupConLoss(TEMPERATURE, BASE_TEMPERATURE), combination="[loss] 'supcon' and [key_store]",
    )


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
            "buffers": {k: v.clone() for k, v in method.stores.state_dict().items()},
        }
    return out


@pytest.mark.distributed
def test_two_processes_equal_one_process_with_the_global_batch():
    built = build(key_store=QUEUE)
    shapes = {name: tensor.shape for name, tensor in built.state_dict().items()}
    assert shapes == {name: tensor.shape for name, tensor in build_direct(queue=True).state_dict().items()}
    assert built.design == SUPCON_DESIGN
    assert [type(store) for store in built.stores] == [type(store) for store in build_direct(queue=True).stores]
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
    assert int(single["queue"]["buffers"]["1.count"]) == QUEUE_SIZE
