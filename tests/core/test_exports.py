"""Exports describe themselves: every shipped recipe's backbone reloads strictly with ``sslcore.load_backbone``, and
``--format timm`` is refused where timm alone cannot rebuild the network (CIFAR stem)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

import sslcore
from sslcore.cli import main
from sslcore.errors import SslcoreError
from sslcore.export import DESCRIPTION_KEY, network_metadata, read_metadata, save_backbone, save_networks
from sslcore.plugins import PluginHost
from sslcore.recipe import Recipe, read_toml, resolve_document


def _tiny_recipe(path: Path, host: PluginHost) -> Recipe:
    """The shipped recipe with small backbones: timm ViTs at 32 px, never downloading weights."""
    document = read_toml(path)
    tables = [document["backbone"]] if "backbone" in document else list(document["backbones"].values())
    for table in (table for table in tables if table["kind"] == "timm"):  # plugins' own backbones download nothing
        table["pretrained"] = False
        if table["name"].startswith("vit_"):
            table["img_size"] = 32
    return resolve_document(document, str(path), host)


def _input(config: object) -> torch.Tensor:
    return torch.randn(2, getattr(config, "in_chans", None) or 3, 32, 32)


def test_every_shipped_recipe_backbone_reloads_strictly(tmp_path: Path) -> None:
    host = PluginHost()
    assert len(host.recipes.names()) > 40
    checked: dict[str, str] = {}  # backbone description -> recipe: each distinct network is built once
    for entry in host.recipes:
        recipe = _tiny_recipe(entry.path, host)
        tables = [table for table in recipe.components if table == "backbone" or table.startswith("backbones.")]
        names = ["backbone"] if tables == ["backbone"] else [table.removeprefix("backbones.") for table in tables]
        for name, table in zip(names, tables):
            metadata = network_metadata(recipe, name, len(names))
            assert metadata["sslcore.recipe"] == str(entry.path) and metadata["sslcore.network"] == name
            assert json.loads(metadata[DESCRIPTION_KEY])["kind"] == recipe.components[table].kind
            if metadata[DESCRIPTION_KEY] in checked:
                continue
            checked[metadata[DESCRIPTION_KEY]] = entry.name
            spec = recipe.components[table]
            torch.manual_seed(0)
            original = spec.build().eval()
            (path,) = save_networks({name: original}, tmp_path, recipe)
            reloaded = sslcore.load_backbone(path, host)
            images = _input(spec.config)
            with torch.no_grad():
                assert torch.equal(original(images), reloaded(images)), entry.name
            assert reloaded.num_features == original.num_features
    assert len(checked) >= 10


def _run_dir(tmp_path: Path, directory: str, **options: object) -> Path:
    """A run directory holding the recipe.toml and backbone export of a tiny resnet10t run (untrained)."""
    host = PluginHost()
    document = read_toml(host.recipes.get("simclr_smoke").path)
    document["backbone"] = {"kind": "timm", "name": "resnet10t", **options}
    recipe = resolve_document(document, "simclr_smoke", host)
    run_dir = tmp_path / directory
    run_dir.mkdir()
    (run_dir / "recipe.toml").write_text(recipe.to_toml())
    save_networks({"backbone": recipe.components["backbone"].build()}, run_dir, recipe)
    return run_dir


def test_timm_format_loads_in_timm_and_is_refused_for_a_cifar_stem(tmp_path: Path, capsys) -> None:
    plain = _run_dir(tmp_path, "plain", in_chans=1)
    main(["export", str(plain), str(tmp_path / "plain.safetensors"), "--format", "timm"])
    assert "timm.create_model('resnet10t', num_classes=0, in_chans=1, pretrained=True" in capsys.readouterr().out
    model = timm.create_model("resnet10t", num_classes=0, in_chans=1, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "plain.safetensors")))
    images = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(images), sslcore.load_backbone(tmp_path / "plain.safetensors")(images))

    stem = _run_dir(tmp_path, "stem", cifar_stem=True)
    with pytest.raises(SystemExit):
        main(["export", str(stem), str(tmp_path / "stem.safetensors"), "--format", "timm"])
    error = capsys.readouterr().err
    assert "cifar_stem" in error and "sslcore.load_backbone" in error
    assert not (tmp_path / "stem.safetensors").exists()
    main(["export", str(stem), str(tmp_path / "stem.safetensors")])  # the default format keeps the metadata
    assert read_metadata(tmp_path / "stem.safetensors")[DESCRIPTION_KEY] == read_metadata(
        stem / "backbone.safetensors")[DESCRIPTION_KEY]
    reloaded = sslcore.load_backbone(tmp_path / "stem.safetensors")
    assert reloaded.conv1[0].kernel_size == (3, 3)  # resnet10t's deep stem: its first conv made 3x3 stride 1


def test_a_file_without_sslcore_metadata_is_a_one_line_error(tmp_path: Path) -> None:
    path = save_backbone(torch.nn.Linear(2, 2), tmp_path / "plain.safetensors")
    with pytest.raises(SslcoreError, match="carries no sslcore metadata") as caught:
        sslcore.load_backbone(path)
    assert "\n" not in str(caught.value)
    assert set(load_file(str(path))) == {"weight", "bias"}


def test_the_exports_doc_snippet_runs(tmp_path: Path, monkeypatch) -> None:
    text = (Path(__file__).parents[2] / "docs" / "exports.md").read_text()
    snippet = text.split("```python\n")[1].split("```")[0]
    run_dir = _run_dir(tmp_path, "run", name="resnet18", cifar_stem=True)
    monkeypatch.chdir(run_dir)
    exec(compile(snippet, "docs/exports.md", "exec"), {})
