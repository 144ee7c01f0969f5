"""Auxiliary BatchNorm (``dual_bn``): clean and adversarial forwards use different statistics; evaluation and the
export use the main ones only, and the export loads strictly in timm as a plain model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from sslcore.components.backbones import TimmBackboneConfig, build_timm_backbone
from sslcore.components.dual_bn import DualBatchNorm, auxiliary_batchnorm, main_branch
from sslcore.errors import SslcoreError
from sslcore.export import DESCRIPTION_KEY, network_metadata, save_networks
from sslcore.plugins import PluginHost
from sslcore.recipe import read_toml, resolve_document


def running_means(model: torch.nn.Module, branch: str) -> torch.Tensor:
    return torch.cat([getattr(m, branch).running_mean for m in model.modules() if isinstance(m, DualBatchNorm)])


def test_clean_and_adversarial_forwards_use_different_statistics():
    torch.manual_seed(0)
    model = build_timm_backbone(TimmBackboneConfig(name="resnet10t", dual_bn=True, dual_bn_momentum=0.5))
    assert sum(isinstance(m, DualBatchNorm) for m in model.modules()) > 5
    main, aux = running_means(model, "main").clone(), running_means(model, "aux").clone()
    model.train()(torch.rand(4, 3, 16, 16))
    assert not torch.equal(running_means(model, "main"), main) and torch.equal(running_means(model, "aux"), aux)
    main = running_means(model, "main").clone()
    with auxiliary_batchnorm(model):
        model(torch.rand(4, 3, 16, 16) * 3)
    assert torch.equal(running_means(model, "main"), main) and not torch.equal(running_means(model, "aux"), aux)
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        clean = model.eval()(images)
        with auxiliary_batchnorm(model):
            adversarial = model(images)
    assert not torch.allclose(clean, adversarial)
    assert not any(m.route_aux for m in model.modules() if isinstance(m, DualBatchNorm))  # the route is restored


def test_the_export_holds_the_main_statistics_and_loads_strictly_in_timm(tmp_path: Path):
    torch.manual_seed(0)
    host = PluginHost()
    document = read_toml(host.recipes.get("simclr_smoke").path)
    document["backbone"] = {"kind": "timm", "name": "resnet10t", "dual_bn": True}
    recipe = resolve_document(document, "simclr_smoke", host)
    model = recipe.components["backbone"].build().train()
    for _ in range(2):
        model(torch.rand(4, 3, 16, 16))
        with auxiliary_batchnorm(model):
            model(torch.rand(4, 3, 16, 16) * 3)
    (path,) = save_networks({"backbone": model}, tmp_path, recipe)
    assert "dual_bn" not in json.loads(network_metadata(recipe, "backbone", 1)[DESCRIPTION_KEY])
    weights = load_file(str(path))
    assert not any(".aux." in key or ".main." in key for key in weights)
    plain = timm.create_model("resnet10t", num_classes=0)
    plain.load_state_dict(weights, strict=True)
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(plain.eval()(images), model.eval()(images))
        assert torch.equal(main_branch(model)(images), model(images))


def test_a_model_without_batchnorm_is_an_error():
    with pytest.raises(SslcoreError, match="has no BatchNorm"):
        build_timm_backbone(TimmBackboneConfig(name="vit_tiny_patch16_224", img_size=32, dual_bn=True))


def test_dual_bn_without_an_attack_is_an_error(tmp_path: Path, monkeypatch):
    """Twins that no forward reaches would get no gradient (and DDP on several processes refuses that)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from sslcore.engine.trainer import train_from_recipe

    with pytest.raises(SslcoreError, match=r"dual_bn = true but the recipe has no \[attack\]"):
        train_from_recipe("simclr_smoke", [f"run.output_dir={tmp_path}", "backbone.dual_bn=true"], host=PluginHost())
    assert not (tmp_path / "simclr_smoke" / "metrics.jsonl").exists()
