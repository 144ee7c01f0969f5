"""AdvProp: the supervised method's loss, crop-and-flip views, the recipe's PGD attacker from the paper, and an
end-to-end run whose export (main BatchNorms only) loads in timm."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from sslcore_plugin_advprop import CropFlipViewsConfig, build_crop_flip

from sslcore.cli import main as run_main
from sslcore.errors import SslcoreError
from sslcore.export import load_strictly
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import build_method, pil_and_batched_views

INFO = StepInfo(step=0, total_steps=1, steps_per_epoch=1)


def supervised(**options):
    document = {
        "backbone": {"kind": "timm", "name": "resnet10t"},
        "method": {"kind": "advprop", "num_classes": 3, **options},
    }
    return build_method(document)


def test_the_loss_is_the_cross_entropy_of_the_linear_classifier():
    torch.manual_seed(0)
    method = supervised(label_smoothing=0.1)
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 2, 1, 2])
    output = method(Batch(views=[images], index=torch.arange(4), label=labels), INFO)
    with torch.no_grad():
        method.eval()
        expected = F.cross_entropy(method.classifier(method.backbone.train()(images)), labels, label_smoothing=0.1)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_unlabelled_data_is_a_one_line_error():
    with pytest.raises(SslcoreError, match="needs class labels"):
        supervised()(Batch(views=[torch.randn(2, 3, 16, 16)], index=torch.arange(2)), INFO)


def test_crop_flip_views_change_no_colour():
    transform = build_crop_flip(CropFlipViewsConfig(size=8, num_views=2, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    views = transform(Image.new("RGB", (20, 20), (255, 0, 0)))
    assert len(views) == 2 and views[0].shape == (3, 8, 8)
    assert torch.allclose(views[1], torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 8, 8))


def test_batched_crop_flip_views_are_the_pil_views():
    """``pipeline = "batched"`` draws the same crops and flips as the PIL pipeline for the same seeds."""
    rng = torch.Generator().manual_seed(0)
    images = [
        Image.fromarray(torch.randint(0, 256, (24, 20, 3), generator=rng, dtype=torch.uint8).numpy()) for _ in range(16)
    ]
    options = {"size": 16, "num_views": 2, "interpolation": "bilinear"}
    pil = build_crop_flip(CropFlipViewsConfig(**options))
    reference, views, _ = pil_and_batched_views(
        pil, build_crop_flip(CropFlipViewsConfig(**options, pipeline="batched")), images
    )
    for ref, view in zip(reference, views, strict=True):
        assert (view - ref).abs().mean() < 0.1  # resampling of noise (0.05); other crops differ by about 1


def test_the_recipe_uses_the_papers_pgd_attacker_and_auxiliary_batchnorm():
    recipe = resolve("advprop_cifar10", PluginHost())
    attack = recipe.components["attack"]
    assert attack.kind == "pgd" and attack.config.weight == 1.0
    epsilon, step = attack.config.epsilon * 255, attack.config.step_size * 255
    assert (round(epsilon), round(step), attack.config.steps) == (2, 1, round(epsilon) + 1)  # sec. 5.1: n = eps + 1
    assert (attack.config.from_view, attack.config.into_view) == (0, 0)
    assert recipe.components["backbone"].config.dual_bn


def test_advprop_trains_end_to_end_and_exports_a_plain_timm_model(tmp_path):
    run_main(
        [
            "run",
            "advprop_smoke",
            "run.steps=2",
            "data.size=16",
            "views.size=16",
            "eval.transform.size=16",
            f"run.output_dir={tmp_path}",
        ]
    )
    records = [json.loads(line) for line in (tmp_path / "advprop_smoke" / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in records if "loss" in r]
    assert trained and all(
        r["loss"] == pytest.approx(r["clean_loss"] + r["adversarial_loss"], rel=1e-5) for r in trained
    )
    load_strictly(timm.create_model("resnet10t", num_classes=0), tmp_path / "advprop_smoke" / "backbone.safetensors")
