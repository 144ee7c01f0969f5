"""CMC: the colour conversion against skimage, three training steps against the official code written out here
(HobbitLong/CMC NCEAverage / NCECriterion / NCESoftmaxLoss; PyContrast CMCMoCo), the recipes, 2 processes x B
against 1 process x 2B, and the engine: training, export, exact resume from a checkpoint."""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn

import sslcore_plugin_cmc.plugin as cmc_plugin
from sslcore import distributed
from sslcore.components.heads import MLPHead, MLPHeadConfig
from sslcore.components.key_stores import MemoryBank, Queue
from sslcore.components.losses import InfoNCELoss, NCELoss
from sslcore.components.target_updaters import EMAUpdater
from sslcore.data.view_configs import IMAGENET_MEAN, IMAGENET_STD
from sslcore.errors import SslcoreError
from sslcore.evaluation.offline import evaluate_run
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import (
    TinyConfig,
    TinyNet,
    build_method,
    pil_and_batched_views,
    run_distributed,
    tiny_host,
    training_step,
)
from sslcore_plugin_cmc import CMC, CMCEncoder, CMCViewsConfig, ColorSpace, build_cmc_views, rgb_features
from sslcore_plugin_cmc.color import srgb_to_lab, srgb_to_linear_space

# -- the colour conversion ------------------------------------------------------------------------------------------
# skimage 0.26 color.rgb2lab / rgb2ycbcr / rgb2ydbdr of these uint8 pixels (black, white, primaries, a dark pixel on
# both linear branches, dark and mid grey).
PIXELS = [(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255), (5, 3, 1), (10, 10, 10), (128, 128, 128)]
SKIMAGE = {
    "lab": [(0.0, 0.0, 0.0), (100.0, -0.002455, 0.004653), (53.240588, 80.092308, 67.202751),
            (87.735099, -86.18303, 83.179703), (32.295673, 79.185591, -107.8573), (0.899564, 0.244859, 0.941223),
            (2.741735, -0.000174, 0.00033), (53.585013, -0.001473, 0.002791)],
    "ycbcr": [(16.0, 128.0, 128.0), (235.0, 128.0, 128.0), (81.481, 90.203, 240.0), (144.553, 53.797, 34.214),
              (40.966, 240.0, 109.786), (18.894235, 126.825122, 129.021286), (24.588235, 128.0, 128.0),
              (125.929412, 128.0, 128.0)],
    "ydbdr": [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.299, -0.45, -1.333), (0.587, -0.883, 1.116),
              (0.114, 1.333, 0.217), (0.013216, -0.013984, -0.012157), (0.039216, 0.0, 0.0), (0.501961, 0.0, 0.0)],
}
# train_CMC.py get_train_loader (Lab, YCbCr) and PyContrast build_transforms (YDbDr).
SPACE_NORMALIZATION = {
    "lab": ([50.0, 6.025, -6.6895], [50.0, 92.208, 101.1675]),
    "ycbcr": ([116.151, 121.080, 132.342], [109.500, 111.855, 111.964]),
    "ydbdr": ([0.457, -0.082, -0.052], [0.500, 1.331, 1.333]),
}


def convert(rgb: torch.Tensor, space: str) -> torch.Tensor:
    return srgb_to_lab(rgb) if space == "lab" else srgb_to_linear_space(rgb, space)


def reference(rgb: np.ndarray, space: str = "lab") -> np.ndarray:
    """``space`` of (..., 3) sRGB in [0, 1], float64, written from the formulas with skimage's constants: Lab (D65,
    2 degrees; IEC 61966-2-1 and CIE 1976), YCbCr (ITU-R BT.601, studio range), YDbDr (SECAM)."""
    if space == "ycbcr":
        return rgb @ np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]).T + [
            16, 128, 128]
    if space == "ydbdr":
        return rgb @ np.array([[0.299, 0.587, 0.114], [-0.45, -0.883, 1.333], [-1.333, 1.116, 0.217]]).T
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    matrix = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                       [0.019334, 0.119193, 0.950227]])
    xyz = linear @ matrix.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


@pytest.mark.parametrize("space", sorted(SKIMAGE))
def test_conversion_matches_skimage(space):
    rgb = torch.tensor(PIXELS, dtype=torch.float32).t().reshape(1, 3, len(PIXELS), 1) / 255
    got = convert(rgb, space)[0, :, :, 0].t()
    torch.testing.assert_close(got, torch.tensor(SKIMAGE[space]), rtol=0, atol=1e-4)

    image = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    try:
        from skimage import color

        expected = getattr(color, f"rgb2{space}")(image)
    except ImportError:  # skimage is not a dependency: the formulas written out
        expected = reference(image / 255.0, space)
    got = convert(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, space)[0].permute(1, 2, 0)
    torch.testing.assert_close(got.double(), torch.from_numpy(expected), rtol=0, atol=1e-4)


def test_color_space_undoes_the_view_normalisation_and_normalises_as_cmc():
    rgb = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for space, (space_mean, space_std) in SPACE_NORMALIZATION.items():
        module = ColorSpace(space, IMAGENET_MEAN, IMAGENET_STD)
        expected = (convert(rgb, space) - torch.tensor(space_mean).view(1, 3, 1, 1)) / torch.tensor(space_std).view(
            1, 3, 1, 1)
        torch.testing.assert_close(module((rgb - mean) / std), expected, rtol=1e-5, atol=1e-5)
        assert module.state_dict() == {}  # constants only: nothing in checkpoints or exported files
    images = ((rgb - mean) / std).requires_grad_()
    ColorSpace("lab", IMAGENET_MEAN, IMAGENET_STD)(images).sum().backward()
    assert torch.isfinite(images.grad).all()


# -- the method ------------------------------------------------------------------------------------------------------
NUM_SAMPLES = 12
BATCH = 4  # global
NEGATIVES = 6
TEMPERATURE = 0.07
MOMENTUM = 0.5
SGD = dict(lr=0.03, momentum=0.9, weight_decay=1e-4)
STEP_INDICES = [[0, 1, 2, 3], [2, 5, 6, 0], [7, 2, 1, 9]]  # steps 2 and 3 read bank entries written before


@functools.cache
def make_host() -> PluginHost:
    return tiny_host("cmc", cmc_plugin)


def document(loss: dict | None = None, **method) -> dict:
    """Tiny encoders without BatchNorm for L (1 channel) and ab (2 channels), 8-d heads, memory banks and NCE."""
    return {
        "backbones": {name: {"kind": "tiny", "width": 6, "in_chans": c, "batch_norm": False}
                      for name, c in (("l", 1), ("ab", 2))},
        "heads": {name: {"kind": "mlp", "num_layers": 1, "out_dim": 8} for name in ("l", "ab")},
        "key_stores": {name: {"kind": "memory_bank", "momentum": MOMENTUM, "negatives": NEGATIVES}
                       for name in ("l", "ab")},
        "loss": loss or {"kind": "nce", "temperature": TEMPERATURE, "normalize": False},
        "method": {"kind": "cmc", **method},
    }


def build(doc: dict | None = None) -> CMC:
    return build_method(doc or document(), host=make_host(), num_samples=NUM_SAMPLES)


def step_data() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(sRGB in [0, 1], the views: sRGB normalised as the default views normalise it, sample indices) per step."""
    generator = torch.Generator().manual_seed(1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    data = []
    for rows in STEP_INDICES:
        rgb = torch.rand(BATCH, 3, 8, 8, generator=generator)
        data.append((rgb, (rgb - mean) / std, torch.tensor(rows)))
    return data


def lab_input(rgb: torch.Tensor) -> torch.Tensor:
    """train_CMC.py's input: RGB2Lab, ToTensor, Normalize(mean, std) of the Lab view (here from the formulas)."""
    lab = torch.from_numpy(reference(rgb.permute(0, 2, 3, 1).double().numpy())).permute(0, 3, 1, 2)
    mean, std = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1) for v in SPACE_NORMALIZATION["lab"])
    return ((lab - mean) / std).float()


def record_draws(monkeypatch, bank: MemoryBank) -> list[torch.Tensor]:
    """The negative indices ``bank`` draws, in order."""
    drawn: list[torch.Tensor] = []
    original = bank.sample

    def recording(batch: int, m: int):
        vectors, indices = original(batch, m)
        drawn.append(indices.clone())
        return vectors, indices

    monkeypatch.setattr(bank, "sample", recording)
    return drawn


# -- the official computation, written out ---------------------------------------------------------------------------
def nce_criterion(x: torch.Tensor, n_data: int) -> torch.Tensor:
    """NCE/NCECriterion.py NCECriterion.forward: x = P(i|v) of the positive (column 0) and the m noise samples."""
    bsz, m, pn, eps = x.shape[0], x.shape[1] - 1, 1.0 / n_data, 1e-7
    log_d1 = torch.div(x[:, 0], x[:, 0] + (m * pn + eps)).log()
    log_d0 = torch.div(torch.full_like(x[:, 1:], m * pn), x[:, 1:] + (m * pn + eps)).log()
    return -(log_d1.sum(0) + log_d0.view(-1, 1).sum(0)) / bsz


def train_cmc_step(nets, memory, z, lab, y, noise, n_data, softmax):
    """One step of train_CMC.py train(): model(inputs), NCEAverage.forward, criterion_l + criterion_ab; returns
    (loss, Z) and updates ``memory`` in place. ``noise[v]``: the indices drawn from view v's bank (the official code
    draws one ``idx`` for both banks)."""
    l, ab = lab.split([1, 2], dim=1)
    feat = {"l": F.normalize(nets["l"](l), dim=1), "ab": F.normalize(nets["ab"](ab), dim=1)}  # fc, Normalize(2)
    bsz, dim = feat["l"].shape
    out = {}
    for anchor, bank in (("l", "ab"), ("ab", "l")):  # out_l = memory_ab . l; out_ab = memory_l . ab
        idx = torch.cat([y[:, None], noise[bank]], dim=1)  # idx.select(1, 0).copy_(y)
        weight = torch.index_select(memory[bank], 0, idx.view(-1)).detach().view(bsz, -1, dim)
        out[anchor] = torch.bmm(weight, feat[anchor].view(bsz, dim, 1)).view(bsz, -1)
    if softmax:  # NCESoftmaxLoss: cross-entropy with the positive as label 0
        target = torch.zeros(bsz, dtype=torch.long)
        loss = sum(F.cross_entropy(out[v] / TEMPERATURE, target) for v in ("l", "ab"))
    else:
        out = {v: torch.exp(out[v] / TEMPERATURE) for v in out}
        if z is None:  # params[2] = out_l.mean() * outputSize, params[3] likewise, once
            z = {v: out[v].detach().mean() * n_data for v in out}
        loss = sum(nce_criterion(out[v] / z[v], n_data) for v in ("l", "ab"))
    with torch.no_grad():  # "update memory" at the end of NCEAverage.forward
        for v in ("l", "ab"):
            pos = torch.index_select(memory[v], 0, y).mul_(MOMENTUM).add_(feat[v] * (1 - MOMENTUM))
            memory[v].index_copy_(0, y, pos.div(pos.pow(2).sum(1, keepdim=True).pow(0.5)))
    return loss, z


@pytest.mark.parametrize("loss", ["nce", "infonce"])
def test_three_steps_match_train_cmc(monkeypatch, loss):
    torch.manual_seed(0)
    softmax = loss == "infonce"
    config = {"kind": loss, "temperature": TEMPERATURE, "normalize": False}
    method = build(document(config))
    nets = {v: nn.Sequential(copy.deepcopy(method.encoder.backbones[v]), copy.deepcopy(method.encoder.heads[v]))
            for v in ("l", "ab")}
    memory = {v: method.stores[v].bank.clone() for v in ("l", "ab")}
    drawn = {v: record_draws(monkeypatch, method.stores[v]) for v in ("l", "ab")}
    optimizer = torch.optim.SGD(method.parameters(), **SGD)
    reference_optimizer = torch.optim.SGD([p for v in ("l", "ab") for p in nets[v].parameters()], **SGD)
    z = None
    for step, (rgb, views, y) in enumerate(step_data()):
        output = training_step(method, optimizer, Batch(views=[views], index=y), StepInfo(step, 3, 3))
        noise = {v: drawn[v][step] for v in ("l", "ab")}
        expected, z = train_cmc_step(nets, memory, z, lab_input(rgb), y, noise, NUM_SAMPLES, softmax)
        reference_optimizer.zero_grad()
        expected.backward()
        reference_optimizer.step()

        assert noise["l"].shape == noise["ab"].shape == (BATCH, NEGATIVES)
        torch.testing.assert_close(output.loss, expected.reshape(()), rtol=1e-4, atol=1e-4)
        for v in ("l", "ab"):
            if not softmax:
                torch.testing.assert_close(method.losses[v].normalizer, z[v], rtol=1e-4, atol=0)
            torch.testing.assert_close(method.stores[v].bank, memory[v], rtol=1e-4, atol=1e-5)
            encoder = nn.Sequential(method.encoder.backbones[v], method.encoder.heads[v])
            for got, want in zip(encoder.parameters(), nets[v].parameters(), strict=True):
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert set(output.logs) == {"loss_l", "loss_ab"}


MOCO_T, MOCO_M, QUEUE = 0.2, 0.99, 8


def moco_document() -> dict:
    doc = document({"kind": "infonce", "temperature": MOCO_T}, keys_from="target", color_space="ydbdr")
    doc["key_stores"] = {v: {"kind": "queue", "size": QUEUE} for v in ("l", "ab")}
    doc["target_updater"] = {"kind": "ema", "base_momentum": MOCO_M, "buffers": "own"}
    return doc


def test_three_momentum_steps_match_pycontrast():
    torch.manual_seed(0)
    method = build(moco_document())
    model = {v: nn.Sequential(copy.deepcopy(method.encoder.backbones[v]), copy.deepcopy(method.encoder.heads[v]))
             for v in ("l", "ab")}
    model_ema = copy.deepcopy(model)  # wrap_up: momentum_update(model, model_ema, 0)
    queue = {v: method.stores[v].queue.clone() for v in ("l", "ab")}  # CMCMoCo memory_1 (L keys), memory_2 (ab)
    color = ColorSpace("ydbdr", IMAGENET_MEAN, IMAGENET_STD)
    optimizer = torch.optim.SGD(method.parameters(), **SGD)
    reference_optimizer = torch.optim.SGD([p for v in ("l", "ab") for p in model[v].parameters()], **SGD)
    target = torch.zeros(BATCH, dtype=torch.long)
    second = [torch.flip(views, dims=[3]) for _, views, _ in step_data()]  # the second crop: the mirrored image
    for step, (_, views, y) in enumerate(step_data()):
        if step > 0:  # PyContrast momentum-updates after each optimizer step: the same weights at every forward
            with torch.no_grad():
                for v in ("l", "ab"):
                    for p1, p2 in zip(model[v].parameters(), model_ema[v].parameters()):
                        p2.mul_(MOCO_M).add_(p1.detach(), alpha=1 - MOCO_M)
        output = training_step(method, optimizer, Batch(views=[views, second[step]], index=y), StepInfo(step, 3, 3))

        def feats(nets, images):  # CMCSingleHead.forward: split, encoders, heads, Normalize(2)
            channels = dict(zip(("l", "ab"), color(images).split([1, 2], dim=1)))
            return {v: F.normalize(nets[v](channels[v]), dim=1) for v in ("l", "ab")}

        q = feats(model, views)
        with torch.no_grad():
            k = feats(model_ema, second[step])
        loss = 0
        for anchor, other in (("l", "ab"), ("ab", "l")):  # CMCMoCo: logits1 = [q1 . k2, q1 . queue2] / T
            positive = (q[anchor] * k[other]).sum(1, keepdim=True)
            logits = torch.cat([positive, q[anchor] @ queue[other].clone().t()], dim=1)  # memory.clone().detach()
            loss = loss + F.cross_entropy(logits / MOCO_T, target)
        for v in ("l", "ab"):  # _update_memory: index_copy_ at (arange(bsz) + index) % K
            queue[v].index_copy_(0, (torch.arange(BATCH) + step * BATCH) % QUEUE, k[v])
        reference_optimizer.zero_grad()
        loss.backward()
        reference_optimizer.step()

        torch.testing.assert_close(output.loss, loss, rtol=1e-5, atol=1e-5)
        for v in ("l", "ab"):
            torch.testing.assert_close(method.stores[v].queue, queue[v], rtol=1e-5, atol=1e-6)
            encoder = nn.Sequential(method.encoder.backbones[v], method.encoder.heads[v])
            target_encoder = nn.Sequential(method.target.backbones[v], method.target.heads[v])
            for got, want in zip(encoder.parameters(), model[v].parameters(), strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
            for got, want in zip(target_encoder.parameters(), model_ema[v].parameters(), strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_mistakes_are_one_line_errors():
    torch.manual_seed(0)
    method = build()
    _, views, y = step_data()[0]
    with pytest.raises(SslcoreError, match="trains on 1 view per image, the batch has 2"):
        method(Batch(views=[views, views], index=y), StepInfo(0, 1, 1))
    wrong = document()
    wrong["backbones"]["ab"]["in_chans"] = 3
    with pytest.raises(SslcoreError, match=r"\[backbones.ab\] takes 3 input channels, but the ab view has 2"):
        build(wrong)
    wrong = document()
    wrong["heads"]["ab"]["out_dim"] = 4
    with pytest.raises(SslcoreError, match="give both heads the same out_dim"):
        build(wrong)
    wrong = document()
    wrong["key_stores"] = {v: {"kind": "queue", "size": 8} for v in ("l", "ab")}
    with pytest.raises(SslcoreError, match=r"\[loss\] 'nce' and \[key_stores.l\] 'queue' .* do not fit"):
        build(wrong)(Batch(views=[views], index=y), StepInfo(0, 1, 1))
    with pytest.raises(SslcoreError, match="shuffle_bn"):
        build(document(shuffle_bn=True))


def test_without_the_plugin_a_recipe_names_the_package_to_install():
    recipe = Path(cmc_plugin.__file__).parent / "recipes" / "cmc_smoke.toml"
    with pytest.raises(SslcoreError, match=r"\[method.kind\]: unknown method 'cmc'.*`pip install sslcore-plugin-cmc`"):
        resolve(str(recipe), PluginHost(autoload=False))


def test_recipes_resolve_and_views_keep_colour():
    host = make_host()
    paper = resolve("cmc_resnet50", host)
    components = paper.components
    assert [components[f"backbones.{v}"].config.in_chans for v in ("l", "ab")] == [1, 2]
    assert {components[f"key_stores.{v}"].config.negatives for v in ("l", "ab")} == {16384}
    assert {components[f"key_stores.{v}"].config.momentum for v in ("l", "ab")} == {0.5}
    assert (components["loss"].kind, components["loss"].config.temperature) == ("nce", 0.07)
    assert (paper.run.batch_size, paper.run.epochs, paper.optimizer.base_lr) == (128, 240, 0.03)
    assert paper.schedule.milestones == (120, 160, 200) and components["views"].config.scale == (0.08, 1.0)
    moco = resolve("cmc_moco_resnet50", host)
    assert moco.components["method"].config.keys_from == "target"
    assert moco.components["key_stores.ab"].config.size == 65536 and moco.components["views"].config.num_views == 2
    for name in ("cmc_cifar10", "cmc_moco_cifar10"):
        assert resolve(name, host).components["backbones.l"].config.cifar_stem

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    torch.manual_seed(0)
    views = build_cmc_views(CMCViewsConfig(size=16, num_views=2, jitter=(0.4, 0.4, 0.4, 0.1)))(image)
    assert [tuple(view.shape) for view in views] == [(3, 16, 16)] * 2
    ab = ColorSpace("lab", IMAGENET_MEAN, IMAGENET_STD)(torch.stack(views))[:, 1:]
    assert ab.std() > 0.01  # never grayscale


def test_batched_views_are_the_pil_views():
    """``pipeline = "batched"``: the same crops, flips, jitter and blur as the PIL pipeline for the same seeds."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(16)]
    options = {"size": 32, "num_views": 2, "jitter": (0.4, 0.4, 0.4, 0.1), "blur_prob": 0.5}
    reference, views, _ = pil_and_batched_views(build_cmc_views(CMCViewsConfig(**options)),
                                                build_cmc_views(CMCViewsConfig(**options, pipeline="batched")), images)
    for ref, view in zip(reference, views, strict=True):
        assert (view - ref).abs().mean() < 0.06


# -- 2 processes x 2 samples == 1 process x 4 samples ----------------------------------------------------------------
def build_direct(variant: str) -> CMC:
    """The method of document() / moco_document(), built from its classes (the gloo workers skip the plugin host)."""
    space = "lab" if variant == "bank" else "ydbdr"
    backbones = {v: TinyNet(TinyConfig(width=6, in_chans=c, batch_norm=False)) for v, c in (("l", 1), ("ab", 2))}
    heads = {v: MLPHead(MLPHeadConfig(num_layers=1, out_dim=8), in_dim=6) for v in ("l", "ab")}
    encoder = CMCEncoder(ColorSpace(space, IMAGENET_MEAN, IMAGENET_STD), backbones, heads)
    if variant == "bank":
        stores = {v: MemoryBank(8, NUM_SAMPLES, momentum=MOMENTUM, negatives=NEGATIVES) for v in ("l", "ab")}
        return CMC(encoder, stores, {v: NCELoss(temperature=TEMPERATURE) for v in ("l", "ab")})
    stores = {v: Queue(8, QUEUE) for v in ("l", "ab")}
    losses = {v: InfoNCELoss(temperature=MOCO_T) for v in ("l", "ab")}
    return CMC(encoder, stores, losses, updater=EMAUpdater(base_momentum=MOCO_M, buffers="own"))


def train(rank: int, world: int) -> dict:
    """Three SGD steps of both variants on this rank's rows of the global batch (DDP averages the gradients)."""
    results: dict = {"world": distributed.world_size()}
    for variant in ("bank", "momentum"):
        torch.manual_seed(0)
        method = build_direct(variant)
        model = torch.nn.parallel.DistributedDataParallel(method, broadcast_buffers=False) if world > 1 else method
        optimizer = torch.optim.SGD(method.parameters(), **SGD)
        rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        losses = []
        for step, (_, views, y) in enumerate(step_data()):
            crops = [views[rows]] if variant == "bank" else [views[rows], torch.flip(views[rows], dims=[3])]
            output = training_step(method, optimizer, Batch(views=crops, index=y[rows]), StepInfo(step, 3, 3),
                                   model=model)
            losses.append(output.loss.detach())
        results[variant] = {
            "losses": torch.stack(losses),
            "params": [p.detach().clone() for p in method.parameters()],
            "state": {k: t.clone() for k, t in method.state_dict().items() if k.startswith(("stores", "losses"))},
        }
    return results


@pytest.mark.distributed
def test_two_processes_equal_one_process_with_the_global_batch():
    for variant, doc in (("bank", document()), ("momentum", moco_document())):
        shapes = {name: t.shape for name, t in build(doc).state_dict().items()}
        assert shapes == {name: t.shape for name, t in build_direct(variant).state_dict().items()}
    ranks = run_distributed(train, world_size=2)
    single = train(0, 1)
    assert [r["world"] for r in ranks] == [2, 2]
    for variant in ("bank", "momentum"):
        one, two = single[variant], [r[variant] for r in ranks]
        torch.testing.assert_close((two[0]["losses"] + two[1]["losses"]) / 2, one["losses"], rtol=1e-5, atol=1e-5)
        for result in two:
            for got, want in zip(result["params"], one["params"], strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        for name, want in one["state"].items():
            if name.endswith(".bank"):  # sharded: sample i lives on rank i % 2 in row i // 2
                got = torch.empty_like(want)
                got[0::2], got[1::2] = two[0]["state"][name], two[1]["state"][name]
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
            elif not name.endswith(".shard"):  # the queues (replicated), NCE's Z per direction
                for result in two:
                    torch.testing.assert_close(result["state"][name], want, rtol=1e-5, atol=1e-6)
    assert {name for name in single["bank"]["state"] if "normalizer" in name} == {
        "losses.l.normalizer", "losses.ab.normalizer"}


# -- the engine: train, export, resume -------------------------------------------------------------------------
STEPS = ["run.steps=6", "run.checkpoint_every=3", "run.keep_checkpoints=5", "run.log_every=1", "data.size=16",
         "views.size=16", "eval.transform.size=16", "eval.limit_train=32", "eval.limit_eval=16"]


def _engine_env() -> dict[str, str]:
    installed = {ep.name for ep in importlib.metadata.entry_points(group="sslcore")} - {"cmc"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSLCORE_")}
    return dict(env, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
                SSLCORE_BLOCK_PLUGINS=",".join(sorted(installed)))  # the built-ins and this plugin only


def _run(env: dict[str, str], *overrides: str) -> str:
    done = subprocess.run([sys.executable, "-m", "sslcore.run", "cmc_smoke", *STEPS, *overrides], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _losses(run_dir: Path) -> dict[int, tuple[float, float, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["loss"], r["loss_l"], r["loss_ab"]) for r in records if "loss" in r}


def test_smoke_recipe_trains_exports_both_encoders_and_resumes_exactly(tmp_path):
    env = _engine_env()
    _run(env, f"run.output_dir={tmp_path / 'straight'}")
    straight = tmp_path / "straight" / "cmc_smoke"
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["steps"] == 6 and math.isfinite(summary["final_loss"]) and 0 <= summary["knn_top1"] <= 100

    # Both encoders load into timm with their input channels; the RGB wrapper gives their concatenated features.
    import timm  # imported here: the gloo workers, which import this module, never need it

    encoders = {}
    for name, channels in (("l", 1), ("ab", 2)):
        encoders[name] = timm.create_model("resnet10t", in_chans=channels, num_classes=0)
        encoders[name].load_state_dict(load_file(str(straight / f"backbone_{name}.safetensors")), strict=True)
    assert not (straight / "backbone.safetensors").exists()
    network = rgb_features(ColorSpace("lab", IMAGENET_MEAN, IMAGENET_STD), encoders).eval()
    assert network(torch.randn(2, 3, 16, 16)).shape == (2, 2 * 512) == (2, network.num_features)
    # `sslcore eval knn RUN_DIR` rebuilds the method and evaluates its RGB evaluation network on the exported files.
    results = evaluate_run(str(straight), "knn", ["eval.limit_train=32", "eval.limit_eval=16"], make_host())
    assert 0 <= results["knn_top1"] <= 100

    # Resume from the step-3 checkpoint in a copy of the run (both memory banks and both Z come back): the later
    # losses are those of the uninterrupted run, bit for bit.
    resumed = tmp_path / "resumed" / "cmc_smoke"
    later = shutil.ignore_patterns("summary.json", "*.safetensors", "step_0000000[4-9]")
    shutil.copytree(straight, resumed, ignore=later)
    kept = [line for line in (resumed / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] <= 3]
    (resumed / "metrics.jsonl").write_text("\n".join(kept) + "\n")
    checkpoint = resumed / "checkpoints" / "step_00000003"
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == [checkpoint.name]
    stdout = _run(env, f"run.output_dir={tmp_path / 'resumed'}", f"run.resume={checkpoint}")
    assert "at step 3" in stdout
    want, got = _losses(straight), _losses(resumed)
    assert sorted(got) == sorted(want) == list(range(1, 7))
    assert got == want
