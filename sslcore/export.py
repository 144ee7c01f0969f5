"""Export a run's online backbone as safetensors that timm loads as pretrained weights.

``timm.create_model(name, num_classes=0, pretrained=True, pretrained_cfg_overlay=dict(file="backbone.safetensors"))``
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from sslcore.errors import SslcoreError

BACKBONE_FILE = "backbone.safetensors"


def save_backbone(backbone: nn.Module, path: Path) -> Path:
    """Write ``backbone.state_dict()`` (contiguous, unshared copies) atomically to ``path``."""
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in backbone.state_dict().items()}
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata={"format": "pt"})
    os.replace(partial, path)
    return path


def export_run(run_dir: str, output: str) -> Path:
    """Copy the exported backbone of a finished run to ``output``."""
    source = Path(run_dir) / BACKBONE_FILE
    if not source.is_file():
        raise SslcoreError(
            f"no exported backbone in run directory '{run_dir}' ({BACKBONE_FILE} is missing)",
            hint="give the directory of a finished run (it holds summary.json and recipe.toml)",
        )
    target = Path(output)
    if target.suffix != ".safetensors":
        raise SslcoreError(f"output '{output}' must end in .safetensors", hint="e.g. backbone.safetensors")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target
