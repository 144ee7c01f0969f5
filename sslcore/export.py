"""Export a run's networks as safetensors that timm loads as pretrained weights, and :class:`ConcatFeatures`.

A method exports one network (``backbone.safetensors``) or several by name (``backbone_<name>.safetensors``, see
:meth:`sslcore.Method.exported_networks`). Each loads with ``timm.create_model(name, num_classes=0,
pretrained=True, pretrained_cfg_overlay=dict(file="backbone.safetensors"))``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from sslcore.errors import SslcoreError

BACKBONE_FILE = "backbone.safetensors"


class ConcatFeatures(nn.Module):
    """Features of several encoders on the same input, concatenated (CMC evaluates its L and ab encoders so).

    Build it in ``evaluation_network()``: it shares the encoders, so it must not be a submodule of the method.
    """

    def __init__(self, encoders: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.num_features = sum(int(encoder.num_features) for encoder in self.encoders.values())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([encoder(images) for encoder in self.encoders.values()], dim=1)


def save_backbone(backbone: nn.Module, path: Path) -> Path:
    """Write ``backbone.state_dict()`` (contiguous, unshared copies) atomically to ``path``."""
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in backbone.state_dict().items()}
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata={"format": "pt"})
    os.replace(partial, path)
    return path


def save_networks(networks: Mapping[str, nn.Module], run_dir: Path) -> list[Path]:
    """Write each of a method's :meth:`~sslcore.Method.exported_networks` into ``run_dir``."""
    if len(networks) == 1:
        return [save_backbone(next(iter(networks.values())), run_dir / BACKBONE_FILE)]
    return [save_backbone(network, run_dir / f"backbone_{name}.safetensors") for name, network in networks.items()]


def export_run(run_dir: str, output: str) -> list[Path]:
    """Copy the exported networks of a finished run to ``output`` (``OUT.safetensors``; several networks go to
    ``OUT_<name>.safetensors``)."""
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
    target.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        suffix = source.stem.removeprefix("backbone")  # "" or "_<name>"
        written.append(Path(shutil.copyfile(source, target.with_name(target.stem + suffix + target.suffix))))
    return written
