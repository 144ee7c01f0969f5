"""``sslcore eval knn|linear RUN_DIR``: evaluate the exported backbone of a run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from accelerate import PartialState

from sslcore.console import out
from sslcore.engine.trainer import EVAL_SPLIT, TRAIN_SPLIT
from sslcore.errors import SslcoreError
from sslcore.export import BACKBONE_FILE, ConcatFeatures
from sslcore.plugins import PluginHost
from sslcore.recipe import Recipe, apply_overrides, read_toml, resolve_document


def evaluate_run(run_dir: str, protocol: str, overrides: Sequence[str], host: PluginHost) -> dict[str, float]:
    """Rebuild the run's backbone from its resolved recipe, load the exported weights, evaluate, print results.

    A run with several named backbones (``[backbones.<name>]``, exported as ``backbone_<name>.safetensors``) is
    evaluated on their concatenated features, as its kNN monitor was.
    """
    directory = Path(run_dir)
    recipe_path = directory / "recipe.toml"
    named = sorted(directory.glob("backbone_*.safetensors"))
    for required in (recipe_path, *(named or [directory / BACKBONE_FILE])):
        if not required.is_file():
            raise SslcoreError(
                f"'{run_dir}' is not a finished run directory ({required.name} is missing)",
                hint="give the directory a training run wrote (it holds recipe.toml and backbone.safetensors)",
            )
    document = read_toml(recipe_path)
    if document.get("eval", {}).get("kind") != protocol:
        document["eval"] = {"kind": protocol}
    apply_overrides(document, overrides, str(recipe_path))
    recipe = resolve_document(document, str(recipe_path), host)
    backbone = _load_backbones(recipe, directory, named)
    data = recipe.components["data"]
    results = recipe.components["eval"].build().evaluate(
        backbone, data.build(split=TRAIN_SPLIT), data.build(split=EVAL_SPLIT), PartialState().device
    )
    out.print(json.dumps(results))
    return results


def _load_backbones(recipe: Recipe, directory: Path, named: list[Path]) -> nn.Module:
    """The run's exported backbone, or its named backbones' concatenated features, with the saved weights."""
    if not named:
        backbone = recipe.require("backbone", needed_by="evaluation").build()
        backbone.load_state_dict(load_file(str(directory / BACKBONE_FILE)))
        return backbone
    encoders = {}
    for path in named:
        name = path.stem.removeprefix("backbone_")
        encoders[name] = recipe.require(f"backbones.{name}", needed_by=f"the exported {path.name}").build()
        encoders[name].load_state_dict(load_file(str(path)))
    return ConcatFeatures(encoders)
