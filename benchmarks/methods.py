"""The benchmarked methods: which shipped recipe each starts from, and how it is sized for the benchmark.

All three implementations read their hyperparameters (head widths, temperature, momentum, queue size,
optimizer, schedule) from the same resolved recipe, so they train the same networks with the same settings.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import timm
from PIL import Image

from benchmarks.common import BenchConfig
from sslcore.plugins import PluginHost
from sslcore.recipe import Recipe, apply_overrides, locate, read_toml, resolve_document


@dataclass(frozen=True)
class MethodSpec:
    """A benchmark name, the recipe it is built from, and the plugin that must be installed for it."""

    name: str
    recipe: str
    plugin: str
    summary: str
    #: Recipe overrides (``table.key=value``) timed as extra sslcore candidates, by label.
    variants: tuple[str, ...] = ()


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("mocov2", "mocov2_resnet50", "sslcore-plugin-moco",
                   "MoCo v2: query/key encoders with 2-layer MLP head, EMA 0.999, queue of 65536, InfoNCE T=0.2, SGD",
                   variants=("loss.normalize=false",)),
        MethodSpec("simclr", "simclr_cifar10", "sslcore-plugin-simclr",
                   "SimCLR: one encoder on both views, 2-layer BN projector, NT-Xent T=0.5, LARS"),
        MethodSpec("byol", "byol_cifar10", "sslcore-plugin-byol",
                   "BYOL: online + predictor vs cosine-EMA target, 4096-256 MLPs, normalized MSE, LARS"),
        MethodSpec("simsiam", "simsiam_cifar10", "sslcore-plugin-simsiam",
                   "SimSiam: encoder + predictor, stop-gradient target, negative cosine, SGD, fixed predictor lr"),
        MethodSpec("mocov3", "mocov3_cifar10", "sslcore-plugin-mocov3",
                   "MoCo v3: encoder + predictor vs cosine-EMA momentum encoder, in-batch keys, LARS"),
    )
}


@functools.cache
def backbone_width(name: str) -> int:
    """The pooled feature width of a timm model (what the projector's hidden layer matches in MoCo v2 / SimCLR)."""
    model = timm.create_model(name, num_classes=0)
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def stand_in_data(output_dir: str, rows: int) -> dict[str, str]:
    """A ``[data]`` table for a ``saved`` dataset of ``rows`` blank images, written once under ``output_dir``.

    The engine needs a training set to build a run (its size sets the steps per epoch); the benchmark feeds its
    own in-memory batch, so the images are never read.
    """
    path = Path(output_dir) / f"stand_in_{rows}"
    if not path.is_dir():
        features = datasets.Features(image=datasets.Image(), label=datasets.ClassLabel(names=["blank"]))
        blank = Image.new("RGB", (8, 8))
        datasets.Dataset.from_dict({"image": [blank] * rows, "label": [0] * rows}, features=features).save_to_disk(
            str(path))
    return {"kind": "saved", "path": str(path)}


def benchmark_recipe(
    spec: MethodSpec,
    config: BenchConfig,
    host: PluginHost,
    *,
    output_dir: str,
    queue_size: int | None = None,
    overrides: tuple[str, ...] = (),
) -> Recipe:
    """The method's shipped recipe, resized for the benchmark and resolved.

    Changes: the backbone (name and stem), the batch, the view size (a multi-crop's global crops), a stand-in
    dataset of two batches (:func:`stand_in_data`), no workers, no evaluation, bf16 when asked for, then
    ``overrides`` (``table.key=value``).
    The MoCo v2 and SimCLR projectors' hidden width follows the backbone, as in their official code. MoCo v2
    runs BatchNorm over the whole batch (no ``bn_group_size``) like the hand-written and lightly versions.
    """
    path = locate(spec.recipe, host)
    document: dict[str, Any] = read_toml(path)
    run = document["run"]
    run.update(
        name=f"bench_{spec.name}",
        output_dir=output_dir,
        batch_size=config.batch_size,
        num_workers=0,
        mixed_precision="bf16" if config.bf16 else "no",
        progress=False,
        resume="never",
        seed=config.seed,
        eval_every=0,
        checkpoint_every=0,
    )
    document["data"] = stand_in_data(output_dir, 2 * config.batch_size)
    views = document["views"]
    views["global_size" if views["kind"] == "multicrop" else "size"] = config.image_size  # multi-crop: the globals
    document["backbone"] = {"kind": "timm", "name": config.backbone, "cifar_stem": config.cifar_stem}
    document.pop("eval", None)
    if spec.name in ("mocov2", "simclr"):
        document["heads"]["projector"]["hidden_dim"] = backbone_width(config.backbone)
    if spec.name == "mocov2":
        document["method"].pop("bn_group_size", None)
    if queue_size is not None:
        document["key_store"]["size"] = queue_size
    apply_overrides(document, overrides, str(path))
    return resolve_document(document, f"{path} (resized by benchmarks.methods)", host)
