"""CPC v2: the loss against the appendix formula written out with loops, causality of the context (no information
from the rows being predicted), 2 processes x B against 1 process x 2B, learning on a fixed batch, the recipes, and
the engine training the smoke recipe and resuming it exactly."""

from __future__ import annotations

import functools
import json
import math
import shutil

import pytest
import torch

import sslcore
import sslcore_plugin_cpc.plugin as cpc_plugin
from sslcore import distributed
from sslcore.components.key_stores.in_batch import InBatchKeys
from sslcore.components.losses.infonce import InfoNCELoss
from sslcore.errors import SslcoreError
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import TinyConfig, TinyNet, build_method, run_distributed, single_thread, tiny_host, training_step
from sslcore_plugin_cpc import CPC, CPCConfig, MaskedConvContext, MaskedConvContextConfig

TEMPERATURE = 10.0  # 1 / emb_scale
STILL = dict(min_scale=1.0, flip=0.0, color_drop=0.0)  # no per-patch augmentation


@functools.cache
def make_host() -> PluginHost:
    return tiny_host("cpc", cpc_plugin)


def build_direct(*, norm: str = "none", **config) -> CPC:
    """A tiny CPC from its classes (the gloo workers skip the plugin host): 3x3 grid of 4 px patches, stride 2;
    ``norm`` is the patch encoder's normalisation: ``none``, ``batch`` or ``layer`` (GroupNorm(1, C))."""
    config = CPCConfig(**{"grid": 3, "patch_size": 4, "stride": 2, "target_dim": 5, "offsets": (1, 2),
                          "layer_norm": norm != "batch", **config})
    backbone = TinyNet(TinyConfig(width=6, batch_norm=norm != "none"))
    if norm == "layer":
        backbone.net[1] = torch.nn.GroupNorm(1, 6)
    context = MaskedConvContext(6, MaskedConvContextConfig(num_blocks=2, hidden_dim=8))
    loss = InfoNCELoss(temperature=TEMPERATURE, normalize=False)
    return CPC(backbone, context, InBatchKeys(config.target_dim), loss, config)


def test_loss_matches_the_formula_written_out():
    torch.manual_seed(0)
    method = build_direct(**STILL)
    features = torch.randn(2, 6, 3, 3)
    losses = method.predictive_losses(features)
    targets = method.target(features)  # (B, T, G, G)
    everything = targets.permute(0, 2, 3, 1).reshape(-1, 5)  # every target of the batch is a candidate
    predictors = iter(method.predictors)
    for rotation in (0, 1, 2, 3):
        context = method.context(torch.rot90(features, rotation, dims=(2, 3)))
        rotated_targets = torch.rot90(targets, rotation, dims=(2, 3))
        for k in (1, 2):
            prediction = next(predictors)(context)
            terms = []
            for b in range(2):
                for row in range(3 - k):
                    for col in range(3):
                        p = prediction[b, :, row, col]
                        positive = rotated_targets[b, :, row + k, col]
                        normaliser = torch.logsumexp(everything @ p / TEMPERATURE, dim=0)
                        terms.append(normaliser - positive @ p / TEMPERATURE)
            torch.testing.assert_close(losses[f"r{90 * rotation}_k{k}"], torch.stack(terms).mean())
    assert len(losses) == 8


def test_context_at_row_i_sees_no_row_below():
    torch.manual_seed(0)
    context = make_host().registries["context"].get("masked_conv").build(
        MaskedConvContextConfig(num_blocks=3, hidden_dim=8), in_dim=4)
    features = torch.randn(2, 4, 5, 5, requires_grad=True)
    for row in range(5):
        (grad,) = torch.autograd.grad(context(features)[:, :, row].sum(), features)
        assert grad[:, :, row + 1 :].abs().sum() == 0
        assert grad[:, :, : row + 1].abs().sum() > 0  # it does see its own row and those above


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_no_leak_from_patches_below_with_layer_norm(norm):
    """End to end from the patches: with layer norm the context at row i has zero gradient with respect to every
    patch in rows > i; with BatchNorm (training mode) the batch statistics leak them (CPC v2 sec. 4.1)."""
    torch.manual_seed(0)
    method = build_direct(norm=norm, **STILL)
    patches = method.patches(torch.randn(2, 3, 8, 8)).requires_grad_(True)
    grid = method.backbone(patches).view(2, 3, 3, -1).permute(0, 3, 1, 2)
    (grad,) = torch.autograd.grad(method.context(grid)[:, :, 0].sum(), patches)
    below = grad.view(2, 3, 3, -1)[:, 1:].abs().sum()
    assert (below == 0) if norm == "layer" else (below > 0)


def test_layer_norm_refuses_a_batch_norm_encoder():
    with pytest.raises(SslcoreError, match='norm_layer = "groupnorm1"'):
        build_direct(norm="batch", layer_norm=True)


def step_data() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=generator) for _ in range(2)]


def train(rank: int, world: int) -> dict:
    """Two SGD steps on this rank's rows of a global batch of 4 (DDP averages the gradients when world > 1)."""
    torch.manual_seed(0)
    method = build_direct(**STILL)
    model = torch.nn.parallel.DistributedDataParallel(method) if world > 1 else method
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9)
    local = 4 // world
    losses = []
    for step, images in enumerate(step_data()):
        rows = slice(rank * local, (rank + 1) * local)
        batch = Batch(views=[images[rows]], index=torch.arange(4)[rows])
        losses.append(training_step(method, optimizer, batch, StepInfo(step, 2, 2), model=model).loss.detach())
    return {"world": distributed.world_size(), "losses": torch.stack(losses),
            "params": [p.detach().clone() for p in method.parameters()]}


@pytest.mark.distributed
def test_two_processes_equal_one_process_with_the_global_batch():
    ranks = run_distributed(train, world_size=2)
    single = train(0, 1)
    assert [r["world"] for r in ranks] == [2, 2]
    torch.testing.assert_close((ranks[0]["losses"] + ranks[1]["losses"]) / 2, single["losses"], rtol=1e-5, atol=1e-5)
    for result in ranks:
        for got, want in zip(result["params"], single["params"], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    method = build_direct(**STILL)
    optimizer = torch.optim.Adam(method.parameters(), lr=3e-2)
    batch = Batch(views=[torch.randn(4, 3, 8, 8)], index=torch.arange(4))
    with single_thread():
        losses = [training_step(method, optimizer, batch, StepInfo(s, 40, 40)).loss.item() for s in range(40)]
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5, losses


def test_patch_augmentation_is_per_patch_and_seeded():
    method = build_direct(min_scale=0.5, flip=0.5, color_drop=1.0)
    images = torch.randn(2, 3, 8, 8)
    torch.manual_seed(3)
    first = method.patches(images)
    torch.manual_seed(3)
    torch.testing.assert_close(method.patches(images), first)
    kept = (first.abs().sum(dim=(2, 3)) > 0).float()  # colour drop keeps exactly one channel of every patch
    assert first.shape == (18, 3, 4, 4) and torch.equal(kept.sum(dim=1), torch.ones(18))
    assert len({tuple(row.tolist()) for row in kept}) > 1  # patches drew their channels independently
    torch.testing.assert_close(method.patches.eval()(images)[4], images[0, :, 2:6, 2:6])  # eval: centre patch as is


def test_rejects_wrong_inputs_and_components():
    method = build_direct()
    with pytest.raises(SslcoreError, match="needs 8 px images"):
        method(Batch(views=[torch.randn(2, 3, 9, 9)], index=torch.arange(2)), StepInfo(0, 1, 1))
    with pytest.raises(SslcoreError, match="one view per image"):
        method(Batch(views=[torch.randn(2, 3, 8, 8)] * 2, index=torch.arange(2)), StepInfo(0, 1, 1))
    document = {
        "backbone": {"kind": "tiny", "width": 6, "batch_norm": False},
        "context": {"kind": "masked_conv", "num_blocks": 1, "hidden_dim": 8},
        "key_store": {"kind": "queue", "size": 64},
        "loss": {"kind": "infonce"},
        "method": {"kind": "cpc", "grid": 3, "patch_size": 4, "stride": 2, "offsets": [1]},
    }
    with pytest.raises(SslcoreError, match="in_batch"):
        build_method(document, host=make_host())
    with pytest.raises(SslcoreError, match="below the grid size"):
        build_method({**document, "method": {**document["method"], "offsets": [3]}}, host=make_host())


def test_recipes_resolve():
    host = make_host()
    paper = resolve("cpc_resnet50", host)
    config = paper.components["method"].config
    assert (config.grid, config.patch_size, config.stride, config.directions) == (7, 64, 32, 4)
    assert config.offsets == (3,) and config.target_dim == 64 and config.layer_norm
    assert paper.components["backbone"].config.norm_layer == "groupnorm1"
    assert paper.components["context"].config == MaskedConvContextConfig(num_blocks=5, hidden_dim=256)
    loss = paper.components["loss"].config
    assert (loss.temperature, loss.normalize) == (10.0, False)
    cifar = resolve("cpc_cifar10", host)
    cifar_method = cifar.components["method"].config
    assert cifar_method.patch_size + (cifar_method.grid - 1) * cifar_method.stride == 32
    assert cifar.components["data"].kind == "parquet"
    for recipe in (paper, cifar):  # Adam (AdamW without weight decay) at 4e-4 whatever the batch size
        optimizer = recipe.optimizer
        assert (optimizer.kind, optimizer.weight_decay, optimizer.base_lr) == ("adamw", 0.0, 4e-4)
        assert optimizer.lr(recipe.run.batch_size) == optimizer.lr(7 * recipe.run.batch_size) == 4e-4


def test_engine_trains_and_resumes_the_smoke_recipe_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sslcore.engine.trainer import train_from_recipe  # imported here: the gloo workers never need it

    host = PluginHost(autoload=False, extra_plugins=[("cpc", cpc_plugin)])
    common = ["run.checkpoint_every=2", "run.keep_checkpoints=5", "run.deterministic=true"]
    summary = train_from_recipe("cpc_smoke", [f"run.output_dir={tmp_path / 'straight'}", *common], host=host)
    straight = tmp_path / "straight" / "cpc_smoke"
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    # The export rebuilds the layer-norm encoder from its own description, without this plugin.
    encoder = sslcore.load_backbone(straight / "backbone.safetensors", PluginHost(autoload=False))
    assert any(isinstance(m, torch.nn.GroupNorm) for m in encoder.modules())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in encoder.modules())

    resumed = tmp_path / "resumed" / "cpc_smoke"
    shutil.copytree(straight, resumed, ignore=shutil.ignore_patterns("summary.json", "*.safetensors", "step_00000004"))
    records = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    (resumed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records if r["step"] <= 2))
    train_from_recipe("cpc_smoke", [f"run.output_dir={tmp_path / 'resumed'}", *common,
                                    f"run.resume={resumed / 'checkpoints' / 'step_00000002'}"], host=host)
    losses = [{r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
               if "loss" in r} for run in (straight, resumed)]
    assert sorted(losses[0]) == [1, 2, 3, 4] and losses[1] == losses[0]
    assert sum("loss" in line for line in (resumed / "metrics.jsonl").read_text().splitlines()) == 4  # no rerun of 1-2
