"""InstDisc: three training steps against the official lemniscate.pytorch computation written out here, the
recipes, the engine, and 2 processes x B against 1 process x 2B (loss, weights and the sharded memory bank)."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sslcore_plugin_instdisc.plugin as instdisc_plugin
from sslcore import distributed
from sslcore.components.heads import MLPHead, MLPHeadConfig
from sslcore.components.key_stores import MemoryBank
from sslcore.components.losses import NCELoss
from sslcore.engine.optim import StepSchedule
from sslcore.errors import SslcoreError
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import TinyConfig, TinyNet, build_method, build_recipe, run_distributed, tiny_host, training_step
from sslcore_plugin_instdisc import InstDisc

NUM_SAMPLES = 12
BATCH = 4  # global
NEGATIVES = 6
TEMPERATURE = 0.07
MOMENTUM = 0.5
SGD = dict(lr=0.03, momentum=0.9, weight_decay=5e-4)
STEP_INDICES = [[0, 1, 2, 3], [2, 5, 6, 0], [7, 2, 1, 9]]  # steps 2 and 3 read entries written before


@functools.cache
def make_host() -> PluginHost:
    return tiny_host("instdisc", instdisc_plugin)


DOCUMENT = {
    "backbone": {"kind": "tiny", "width": 6, "batch_norm": False},
    "heads": {"embedding": {"kind": "mlp", "num_layers": 1, "out_dim": 8}},
    "key_store": {"kind": "memory_bank", "momentum": MOMENTUM},
    "loss": {"kind": "nce", "temperature": TEMPERATURE, "normalize": False},
    "method": {"kind": "instdisc", "num_negatives": NEGATIVES},
}


def build(document: dict | None = None):
    return build_method(document or DOCUMENT, host=make_host(), num_samples=NUM_SAMPLES)


def step_data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 3, 8, 8, generator=generator), torch.tensor(rows)) for rows in STEP_INDICES]


# -- the official computation (lib/NCEAverage.py, lib/NCECriterion.py), written out -----------------------------
def lemniscate_step(net, memory, z, x, y, noise, n):
    """One forward/backward of lemniscate: returns (loss, Z); updates ``memory`` in place as NCEFunction.backward."""
    feature = F.normalize(net(x), dim=1)  # models/resnet.py: fc then Normalize(2)
    batch, dim = feature.shape
    k = noise.shape[1]
    idx = torch.cat([y[:, None], noise], dim=1)  # idx.select(1, 0).copy_(y): column 0 is the positive
    weight = memory.index_select(0, idx.view(-1)).view(batch, k + 1, dim)
    out = torch.exp(torch.bmm(weight, feature.view(batch, dim, 1)).view(batch, k + 1) / TEMPERATURE)
    if z is None:  # params[2] = out.mean() * outputSize, once
        z = out.detach().mean() * n
    out = out / z
    eps, pn = 1e-7, 1.0 / n  # NCECriterion
    ln_pmt = torch.log(out[:, 0] / (out[:, 0] + k * pn + eps))
    ln_pon = torch.log((k * pn) / (out[:, 1:] + k * pn + eps))
    loss = -(ln_pmt.sum() + ln_pon.sum()) / batch
    with torch.no_grad():  # NCEFunction.backward: the bank row of each sample
        weight_pos = weight[:, 0] * MOMENTUM + feature * (1 - MOMENTUM)
        memory.index_copy_(0, y, weight_pos / weight_pos.pow(2).sum(1, keepdim=True).pow(0.5))
    return loss, z


def test_three_steps_match_lemniscate(monkeypatch):
    torch.manual_seed(0)
    method = build()
    reference = nn.Sequential(copy.deepcopy(method.backbone), copy.deepcopy(method.embedding))
    memory = method.memory_bank.bank.clone()
    initial_bank = memory.clone()
    drawn: list[torch.Tensor] = []
    original_sample = method.memory_bank.sample

    def recording_sample(batch: int, m: int):
        vectors, indices = original_sample(batch, m)
        drawn.append(indices.clone())
        return vectors, indices

    monkeypatch.setattr(method.memory_bank, "sample", recording_sample)
    optimizer = torch.optim.SGD(method.parameters(), **SGD)
    reference_optimizer = torch.optim.SGD(reference.parameters(), **SGD)
    z = None
    for step, (x, y) in enumerate(step_data()):
        output = training_step(method, optimizer, Batch(views=[x], index=y), StepInfo(step, 3, 3))

        expected, z = lemniscate_step(reference, memory, z, x, y, drawn[step], NUM_SAMPLES)
        reference_optimizer.zero_grad()
        expected.backward()
        reference_optimizer.step()

        assert drawn[step].shape == (BATCH, NEGATIVES)
        torch.testing.assert_close(output.loss, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(method.loss.normalizer, z)
        torch.testing.assert_close(method.memory_bank.bank, memory, rtol=1e-5, atol=1e-6)
        for got, want in zip(method.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    touched = sorted({i for rows in STEP_INDICES for i in rows})
    untouched = sorted(set(range(NUM_SAMPLES)) - set(touched))
    assert not torch.allclose(method.memory_bank.bank[touched], initial_bank[touched])
    assert torch.equal(method.memory_bank.bank[untouched], initial_bank[untouched])
    assert torch.allclose(method.memory_bank.bank[touched].norm(dim=1), torch.ones(len(touched)))


def test_rejects_wrong_views_and_components():
    torch.manual_seed(0)
    method = build()
    x, y = step_data()[0]
    with pytest.raises(SslcoreError, match="one view per image"):
        method(Batch(views=[x, x], index=y), StepInfo(0, 1, 1))
    with pytest.raises(SslcoreError, match="needs a memory bank"):
        build({**DOCUMENT, "key_store": {"kind": "in_batch"}})
    with pytest.raises(SslcoreError, match="noise-contrastive"):
        build({**DOCUMENT, "loss": {"kind": "infonce"}})


def test_recipes_resolve_and_smoke_builds():
    host = make_host()
    paper = resolve("instdisc_resnet50", host)
    assert paper.components["method"].config.num_negatives == 4096
    assert paper.components["loss"].config.temperature == 0.07
    assert paper.components["key_store"].config.momentum == 0.5
    assert paper.components["views"].config.num_views == 1
    assert (paper.run.batch_size, paper.run.epochs, paper.optimizer.base_lr) == (256, 200, 0.03)
    cifar = resolve("instdisc_cifar10", host)
    assert cifar.components["data"].kind == "parquet" and cifar.components["backbone"].config.cifar_stem
    # lemniscate.pytorch cifar.py at HEAD: --lr 0.03, lr * 0.1 ** ((epoch - 80) // 40) from epoch 80.
    assert cifar.optimizer.base_lr * cifar.run.batch_size / cifar.optimizer.reference_batch == 0.03
    schedule = StepSchedule(cifar.schedule, total_steps=200 * 390, steps_per_epoch=390)
    for epoch in (0, 79, 80, 119, 120, 159, 160, 199):
        official = 0.1 ** ((epoch - 80) // 40) if epoch >= 80 else 1.0
        assert schedule.lr_factor(epoch * 390) == pytest.approx(official), epoch

    torch.manual_seed(0)
    _, method = build_recipe("instdisc_smoke", host, num_samples=64, total_steps=4, steps_per_epoch=4)
    batch = Batch(views=[torch.randn(16, 3, 32, 32)], index=torch.arange(16))
    loss = method(batch, StepInfo(0, 4, 4)).loss
    assert loss.ndim == 0 and math.isfinite(loss.item())


def test_engine_trains_the_smoke_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sslcore.engine.trainer import train_from_recipe  # imported here: the gloo workers never need it

    summary = train_from_recipe("instdisc_smoke", [f"run.output_dir={tmp_path}"], host=make_host())
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    assert 0.0 <= summary["knn_top1"] <= 100.0
    assert (tmp_path / "instdisc_smoke" / "backbone.safetensors").is_file()


# -- 2 processes x 2 samples == 1 process x 4 samples ----------------------------------------------------------
def build_direct() -> InstDisc:
    """The method of DOCUMENT, built from its classes: the gloo workers skip the plugin host's imports."""
    embedding = MLPHead(MLPHeadConfig(num_layers=1, out_dim=8), in_dim=6)
    bank = MemoryBank(8, NUM_SAMPLES, momentum=MOMENTUM)
    loss = NCELoss(temperature=TEMPERATURE, normalize=False)
    return InstDisc(TinyNet(TinyConfig(width=6, batch_norm=False)), embedding, bank, loss, num_negatives=NEGATIVES)


def train(rank: int, world: int) -> dict:
    """Three SGD steps on this rank's rows of the global batch (DDP averages the gradients when world > 1)."""
    torch.manual_seed(0)
    method = build_direct()
    model = torch.nn.parallel.DistributedDataParallel(method, broadcast_buffers=False) if world > 1 else method
    optimizer = torch.optim.SGD(method.parameters(), **SGD)
    local = BATCH // world
    losses = []
    for step, (x, y) in enumerate(step_data()):
        rows = slice(rank * local, (rank + 1) * local)
        batch = Batch(views=[x[rows]], index=y[rows])
        output = training_step(method, optimizer, batch, StepInfo(step, 3, 3), model=model)
        losses.append(output.loss.detach())
    return {
        "world": distributed.world_size(),
        "losses": torch.stack(losses),
        "params": [p.detach().clone() for p in method.parameters()],
        "bank": method.memory_bank.bank.clone(),
        "normalizer": method.loss.normalizer.clone(),
    }


@pytest.mark.distributed
def test_two_processes_equal_one_process_with_the_global_batch():
    shapes = {name: tensor.shape for name, tensor in build().state_dict().items()}
    assert shapes == {name: tensor.shape for name, tensor in build_direct().state_dict().items()}
    ranks = run_distributed(train, world_size=2)
    single = train(0, 1)
    assert [r["world"] for r in ranks] == [2, 2]
    torch.testing.assert_close((ranks[0]["losses"] + ranks[1]["losses"]) / 2, single["losses"], rtol=1e-5, atol=1e-5)
    for result in ranks:
        torch.testing.assert_close(result["normalizer"], single["normalizer"])
        for got, want in zip(result["params"], single["params"], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # The bank is sharded: sample i lives on rank i % 2 in row i // 2.
    bank = torch.empty_like(single["bank"])
    bank[0::2], bank[1::2] = ranks[0]["bank"], ranks[1]["bank"]
    torch.testing.assert_close(bank, single["bank"], rtol=1e-5, atol=1e-6)
