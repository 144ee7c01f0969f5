"""Export a run's networks as safetensors that describe themselves, :func:`load_backbone`, and :class:`ConcatFeatures`.

A method exports one network (``backbone.safetensors``) or several by name (``backbone_<name>.safetensors``, see
:meth:`sslcore.Method.exported_networks`). Each file's metadata records how to rebuild its network (the backbone
table's kind and resolved config, the timm model and its kwargs, the sslcore version, the recipe, the network's
name), so :func:`load_backbone` rebuilds it through the backbone registry and loads it strictly. Where timm alone
can rebuild it (no surgery such as ``cifar_stem``), it loads with ``timm.create_model(name, num_classes=0,
pretrained=True, pretrained_cfg_overlay=dict(file="backbone.safetensors"))``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sslcore.components.dual_bn import main_branch
from sslcore.errors import SslcoreError

if TYPE_CHECKING:
    from sslcore.plugins import PluginHost
    from sslcore.recipe import Recipe

BACKBONE_FILE = "backbone.safetensors"
#: Metadata keys: the backbone table (JSON: kind and resolved config) and timm's model, kwargs and surgery.
DESCRIPTION_KEY = "sslcore.backbone"
TIMM_KEY = "sslcore.timm"
#: Backbone options of training only: the export holds the main BatchNorms, so its description drops them.
DUAL_BN_FIELDS = ("dual_bn", "dual_bn_momentum")


class ConcatFeatures(nn.Module):
    """Features of several encoders on the same input, concatenated (one encoder per view, e.g. per colour channel group).

    Build it in ``evaluation_network()``: it shares the encoders, so it must not be a submodule of the method.
    """

    def __init__(self, encoders: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.num_features = sum(int(encoder.num_features) for encoder in self.encoders.values())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([encoder(images) for encoder in self.encoders.values()], dim=1)


def save_backbone(backbone: nn.Module, path: Path, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``backbone.state_dict()`` (contiguous, unshared copies; main BatchNorms only, see ``dual_bn``) with
    ``metadata`` atomically to ``path``."""
    state = main_branch(backbone).state_dict()
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in state.items()}
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata={"format": "pt", **(metadata or {})})
    os.replace(partial, path)
    return path


def save_networks(networks: Mapping[str, nn.Module], run_dir: Path, recipe: Recipe | None = None) -> list[Path]:
    """Write each of a method's :meth:`~sslcore.Method.exported_networks` into ``run_dir``, described by ``recipe``."""
    described = {name: network_metadata(recipe, name, len(networks)) if recipe else {} for name in networks}
    if len(networks) == 1:
        name, network = next(iter(networks.items()))
        return [save_backbone(network, run_dir / BACKBONE_FILE, described[name])]
    return [save_backbone(network, run_dir / f"backbone_{name}.safetensors", described[name])
            for name, network in networks.items()]


def network_metadata(recipe: Recipe, name: str, count: int) -> dict[str, str]:
    """The metadata of exported network ``name`` (one of ``count``): its backbone table where the recipe has one."""
    from sslcore.components.backbones import TimmBackboneConfig, timm_kwargs
    from sslcore.config import unstructure

    try:
        version = importlib.metadata.version("sslcore")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    metadata = {"sslcore.version": version, "sslcore.recipe": recipe.source, "sslcore.network": name}
    tables = {table: spec for table, spec in recipe.components.items()
              if table == "backbone" or table.startswith("backbones.")}
    spec = tables.get(f"backbones.{name}") or (next(iter(tables.values())) if count == len(tables) == 1 else None)
    if spec is None:  # a network no backbone table describes: load_backbone refuses it
        return metadata
    fields = {key: value for key, value in unstructure(spec.config).items() if key not in DUAL_BN_FIELDS}
    metadata[DESCRIPTION_KEY] = json.dumps({"kind": spec.kind, **fields})
    if isinstance(spec.config, TimmBackboneConfig):
        timm = {"model": spec.config.name, "kwargs": timm_kwargs(spec.config), "surgery": spec.config.surgery}
        metadata[TIMM_KEY] = json.dumps(timm)
    return metadata


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (OSError, SafetensorError) as error:
        raise SslcoreError(f"cannot read '{path}' as safetensors: {error}") from None


def build_backbone(table: Mapping[str, Any], where: str, host: PluginHost) -> nn.Module:
    """The backbone a ``[backbone]`` table describes, built through the registry (never downloading weights)."""
    from sslcore.recipe import resolve_tables

    document = {"backbone": {**table, "pretrained": False} if table.get("pretrained") else dict(table)}
    return resolve_tables(document, ["backbone"], where, host)["backbone"].build()


def load_backbone(path: str | os.PathLike[str], host: PluginHost | None = None) -> nn.Module:
    """The network an sslcore export holds, rebuilt from its metadata through the backbone registry, loaded
    strictly, in eval mode (``host``: the plugins providing its backbone kind; the installed ones by default)."""
    from sslcore.plugins import PluginHost

    description = read_metadata(path).get(DESCRIPTION_KEY)
    if description is None:
        raise SslcoreError(f"'{path}' carries no sslcore metadata (no backbone description)",
                           hint="export it again with this sslcore version, or build the network and load_state_dict")
    backbone = build_backbone(json.loads(description), str(path), host or PluginHost())
    load_strictly(backbone, path)
    return backbone.eval()


def load_strictly(network: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load the weights in ``path`` into ``network``; every key must match."""
    try:
        network.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise SslcoreError(f"the weights do not fit the network: {detail[:300]}", where=str(path)) from None


def timm_call(path: Path) -> str:
    """The ``timm.create_model`` call that loads export ``path``; refused where timm alone cannot rebuild it."""
    metadata = read_metadata(path)
    if DESCRIPTION_KEY not in metadata:
        raise SslcoreError(f"'{path}' carries no sslcore metadata, so its timm model is unknown",
                           hint="export it again with this sslcore version")
    if TIMM_KEY not in metadata:
        kind = json.loads(metadata[DESCRIPTION_KEY])["kind"]
        raise SslcoreError(f"{path.name} is a '{kind}' backbone, not a timm model",
                           hint=f"load it with sslcore.load_backbone('{path}')")
    timm = json.loads(metadata[TIMM_KEY])
    if timm["surgery"]:
        raise SslcoreError(f"timm alone cannot rebuild {path.name}: it has {', '.join(timm['surgery'])} surgery",
                           hint=f"load it with sslcore.load_backbone('{path}')")
    kwargs = "".join(f", {key}={value!r}" for key, value in timm["kwargs"].items())
    return (f"timm.create_model({timm['model']!r}{kwargs}, pretrained=True, "
            f"pretrained_cfg_overlay=dict(file={str(path)!r}))")


def export_run(run_dir: str, output: str, format: str = "sslcore") -> list[Path]:
    """Copy the exported networks of a finished run to ``output`` (``OUT.safetensors``; several networks go to
    ``OUT_<name>.safetensors``); ``format="timm"`` first checks that timm alone can rebuild each."""
    directory = Path(run_dir)
    sources = [directory / BACKBONE_FILE] if (directory / BACKBONE_FILE).is_file() else sorted(
        directory.glob("backbone_*.safetensors")
    )
    if not sources:
        raise SslcoreError(
            f"no exported backbone in run directory '{run_dir}' ({BACKBONE_FILE} is missing)",
            hint="give the directory of a finished run (it holds summary.json and recipe.toml)",
        )
    target = Path(output)
    if target.suffix != ".safetensors":
        raise SslcoreError(f"output '{output}' must end in .safetensors", hint="e.g. backbone.safetensors")
    pairs = [(source, target.with_name(target.stem + source.stem.removeprefix("backbone") + target.suffix))
             for source in sources]  # the suffix is "" or "_<name>"
    for source, destination in pairs:
        if format == "timm":
            timm_call(source)
        if destination.exists() and destination.samefile(source):
            raise SslcoreError(f"'{output}' is the run's own {source.name}", where=run_dir,
                               hint="export to a path outside the run directory")
    for source, destination in pairs:
        partial = destination.with_name(destination.name + ".partial")
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, partial)
            os.replace(partial, destination)
        except OSError as error:
            if partial.exists():
                partial.unlink()
            raise SslcoreError(f"cannot write the export: {error.strerror or error}",
                               where=str(error.filename or destination),
                               hint="export to a writable place with free space") from None
    return [destination for _, destination in pairs]
