"""``sslcore eval knn|linear RUN_DIR``: evaluate the exported backbone of a run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accelerate import PartialState
from safetensors.torch import load_file
from torch import nn

from sslcore.config import unstructure
from sslcore.console import out
from sslcore.engine.trainer import EVAL_SPLIT, TRAIN_SPLIT
from sslcore.errors import SslcoreError
from sslcore.evaluation.saved import save_evaluation
from sslcore.export import BACKBONE_FILE, DESCRIPTION_KEY, build_backbone, load_backbone, load_strictly, read_metadata
from sslcore.method import MethodParts
from sslcore.plugins import PluginHost
from sslcore.recipe import Recipe, apply_overrides, read_toml, resolve_document, resolve_tables


def evaluate_run(run_dir: str, protocol: str, overrides: Sequence[str], host: PluginHost) -> dict[str, float]:
    """Rebuild the run's backbone from its saved description, load the exported weights, evaluate, print results.

    One exported network (``backbone.safetensors``) is rebuilt from its metadata (or, for an export without it,
    from the recipe's ``[backbone]`` table) and only the recipe's data and eval tables are resolved, so the run's
    method plugin need not be installed. A run that exported several networks (``backbone_<name>.safetensors``) is
    evaluated as its kNN monitor was: the method is rebuilt from the recipe, the files are loaded into its
    ``exported_networks()`` and its ``evaluation_network()`` is evaluated (e.g. the concatenated features of its
    encoders).
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
    if named:
        recipe = resolve_document(document, str(recipe_path), host)
        data, evaluator = recipe.components["data"], recipe.components["eval"]
        train_data = data.build(split=TRAIN_SPLIT)
        backbone = _load_method_networks(recipe, directory, named, len(train_data))
    else:
        data, evaluator = resolve_tables(document, ["data", "eval"], str(recipe_path), host).values()
        train_data = data.build(split=TRAIN_SPLIT)
        backbone = _load_backbone(document, directory / BACKBONE_FILE, str(recipe_path), host)
    results = evaluator.build().evaluate(backbone, train_data, data.build(split=EVAL_SPLIT), PartialState().device)
    saved = save_evaluation(directory, {"kind": evaluator.kind, **unstructure(evaluator.config)}, results)
    if saved is not None:
        out.print(f"results appended to {saved}")
    out.print(json.dumps(results))  # last: the line a script reads
    return results


def _load_backbone(document: dict[str, Any], path: Path, where: str, host: PluginHost) -> nn.Module:
    """The exported backbone, rebuilt from its metadata or else from the recipe's ``[backbone]`` table."""
    if DESCRIPTION_KEY in read_metadata(path):
        return load_backbone(path, host)
    if not isinstance(document.get("backbone"), dict):
        raise SslcoreError(f"{path.name} has no sslcore metadata and the recipe no [backbone] table", where=where)
    backbone = build_backbone(document["backbone"], where, host)
    load_strictly(backbone, path)
    return backbone


def _load_method_networks(recipe: Recipe, directory: Path, named: list[Path], num_samples: int) -> nn.Module:
    """The evaluation network of the run's method, holding the exported networks."""
    parts = MethodParts(recipe, num_samples=num_samples, total_steps=1, steps_per_epoch=1)
    method = recipe.components["method"].build(parts=parts)
    networks = method.exported_networks()
    for path in named:
        name = path.stem.removeprefix("backbone_")
        if name not in networks:
            raise SslcoreError(f"the run exported {path.name}, but its method exports {', '.join(sorted(networks))}",
                               where=str(directory), hint="evaluate with the method version that trained the run")
        networks[name].load_state_dict(load_file(str(path)))
    return method.evaluation_network()
