"""``sslcore embed RUN_DIR --out FILE.parquet``: one embedding per image of a data split, by a run's backbone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from accelerate import PartialState

from sslcore.console import out
from sslcore.data.views import EvalViewsConfig, build_eval
from sslcore.engine.trainer import TRAIN_SPLIT
from sslcore.errors import SslcoreError
from sslcore.evaluation.features import dataset_features, first_rows
from sslcore.evaluation.offline import _load_backbone, _load_method_networks
from sslcore.export import BACKBONE_FILE
from sslcore.plugins import PluginHost
from sslcore.recipe import ComponentSpec, apply_overrides, read_toml, resolve_document, resolve_tables


def embed_run(run_dir: str, output: str, data: Sequence[str], host: PluginHost, *, split: str = TRAIN_SPLIT,
              batch_size: int = 256, limit: int | None = None) -> datasets.Dataset:
    """Embed the images of ``split`` with the run's exported backbone (several: their concatenation, as the run's
    kNN monitor) and its evaluation view; write ``index``, ``embedding`` (and ``label``) to ``output`` as Parquet.

    ``data``: ``data.key=value`` overrides of the run's ``[data]`` table, or one path (a ``.parquet`` file or a
    folder of Parquet files or of images) that replaces it.
    """
    directory = Path(run_dir)
    recipe_path = directory / "recipe.toml"
    named = sorted(directory.glob("backbone_*.safetensors"))
    for required in (recipe_path, *(named or [directory / BACKBONE_FILE])):
        if not required.is_file():
            raise SslcoreError(f"'{run_dir}' is not a finished run directory ({required.name} is missing)",
                               hint="give the directory a training run wrote")
    document = read_toml(recipe_path)
    paths = [item for item in data if "=" not in item]
    if len(paths) > 1:
        raise SslcoreError(f"--data takes one path, got {len(paths)}: {', '.join(paths)}", hint="embed one at a time")
    if paths:
        document["data"] = _data_table(paths[0])
    apply_overrides(document, [item for item in data if "=" in item], str(recipe_path))
    where = str(recipe_path)
    specs = resolve_tables(document, ["data", *(table for table in ("views", "eval") if table in document)], where, host)
    dataset = first_rows(specs["data"].build(split=split), limit)
    if named:  # as the run's kNN monitor: the method's evaluation network holding the exported networks
        backbone = _load_method_networks(resolve_document(document, where, host), directory, named, len(dataset))
    else:  # rebuilt from the export's own description: the run's method plugin need not be installed
        backbone = _load_backbone(document, directory / BACKBONE_FILE, where, host)
    workers = int(document.get("run", {}).get("num_workers", 0))
    features = dataset_features(backbone, dataset, build_eval(_eval_view(specs)), batch_size=batch_size,
                                num_workers=workers, device=PartialState().device).cpu()
    columns: dict[str, Any] = {"index": list(range(len(dataset))), "embedding": features.numpy()}
    types = {"index": datasets.Value("int64"),
             "embedding": datasets.Sequence(datasets.Value("float32"), length=features.shape[1])}
    if "label" in dataset.column_names:
        columns["label"], types["label"] = dataset["label"], dataset.features["label"]
    embeddings = datasets.Dataset.from_dict(columns, features=datasets.Features(types))
    embeddings.to_parquet(output)
    out.print(f"{len(embeddings)} embeddings of dimension {features.shape[1]} written to {output}")
    return embeddings


def _data_table(path: str) -> dict[str, Any]:
    """A ``[data]`` table reading ``path``: Parquet files, or an image folder (labelled by its subfolders)."""
    location = Path(path).expanduser()
    if location.suffix == ".parquet" or (location.is_dir() and any(location.rglob("*.parquet"))):
        return {"kind": "parquet", "train": path, "test": path}
    if location.is_dir():
        labelled = any(child.is_dir() for child in location.iterdir())
        return {"kind": "image_folder", "train": path, "test": path, "labels": labelled}
    raise SslcoreError(f"--data '{path}' is neither a .parquet file nor a folder", hint="give a path or data.key=value")


def _eval_view(specs: dict[str, ComponentSpec]) -> EvalViewsConfig:
    """The evaluator's view if the run has one, else the default view with the training views' normalization."""
    transform = getattr(specs["eval"].config, "transform", None) if "eval" in specs else None
    if isinstance(transform, EvalViewsConfig):
        return transform
    views = specs["views"].config if "views" in specs else None
    normalize = {key: getattr(views, key) for key in ("mean", "std") if hasattr(views, key)}
    return EvalViewsConfig(**normalize)
