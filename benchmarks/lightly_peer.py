"""The peer column of ``benchmarks.cifar10_knn``: a method assembled from lightly's components, trained on the same
budget as sslcore's run of its recipe and scored by the same kNN.

Everything but the model and its training step is sslcore's, so only the implementation differs: the resolved
recipe with the budget's overrides, the training rows, the per-sample seeded views and the sampler's order (the
engine's own loader), the backbone's initial weights (copied from the engine's randomly initialised backbone, so
"init" is the same network), the kNN evaluator and its data. The model, its heads, loss, momentum updates,
optimizer (lightly's LARS or SGD with its decay groups) and warm-up cosine schedule are lightly's, as
``benchmarks/with_lightly.py`` assembles them. One process, CPU or the first CUDA device.

Import this module only when lightly is installed.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from accelerate import Accelerator

from benchmarks import with_lightly
from benchmarks.common import BenchConfig
from sslcore.engine.trainer import Trainer
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve

#: cifar10_knn rows with a lightly implementation -> its key in ``with_lightly.IMPLEMENTATIONS``.
LIGHTLY_METHODS = {
    "SimCLR": "simclr",
    "MoCo v2": "mocov2",
    "MoCo v3": "mocov3",
    "BYOL": "byol",
    "SimSiam": "simsiam",
    "SwAV": "swav",
    "DINO": "dino",
}


def _copy_initial_backbone(model: with_lightly.LightlyModel, trainer: Trainer) -> None:
    """Start lightly's backbone (and its momentum copy) from the engine's initial backbone weights."""
    state = trainer.method.backbone.state_dict()
    for name in ("backbone", "backbone_momentum"):
        if hasattr(model, name):
            getattr(model, name).load_state_dict(state)


def _knn(trainer: Trainer, network: torch.nn.Module) -> float:
    was_training = network.training
    results = trainer.evaluator.evaluate(network, trainer.train_data, trainer.recipe.components["data"].build(
        split="test"), trainer.accelerator.device)
    network.train(was_training)
    return results["knn_top1"]


def train_lightly(row: str, recipe_name: str, overrides: list[str], *, cifar_stem: bool) -> dict[str, Any]:
    """Train row ``row``'s lightly implementation on ``recipe_name`` with the budget ``overrides``; the same keys
    as the engine's summary.json that the table reads (``knn_top1_init``, ``knn_top1``, ``final_loss``)."""
    host = PluginHost()
    recipe = resolve(recipe_name, host, overrides)
    run = recipe.run
    trainer = Trainer(recipe, host, Accelerator(cpu=not torch.cuda.is_available()))
    device = trainer.accelerator.device.type
    config = BenchConfig(backbone=recipe.components["backbone"].config.name, batch_size=run.batch_size,
                         device=device, cifar_stem=cifar_stem, seed=run.seed)
    trainer.loader.set_epoch(0)
    first = [view.to(device) for view in next(iter(trainer.loader))["views"]]
    torch.manual_seed(run.seed)
    model = with_lightly.IMPLEMENTATIONS[LIGHTLY_METHODS[row]](recipe, config, first, trainer.total_steps,
                                                                trainer.steps_per_epoch)
    _copy_initial_backbone(model, trainer)
    curve, every = [[0, _knn(trainer, model.backbone)]], run.evaluation_interval(trainer.total_steps)
    started, evaluating, loss = time.perf_counter(), 0.0, torch.tensor(float("nan"))
    model.train()
    for epoch in range(-(-trainer.total_steps // trainer.steps_per_epoch)):
        trainer.loader.set_epoch(epoch)
        for batch in trainer.loader:
            if model.step_index == trainer.total_steps:
                break
            loss = model.step([view.to(device) for view in batch["views"]])
            if every and model.step_index % every == 0 and model.step_index < trainer.total_steps:
                began = time.perf_counter()  # the engine's monitor: every eval_every steps, and after the last
                curve.append([model.step_index, _knn(trainer, model.backbone)])
                evaluating += time.perf_counter() - began
    seconds = time.perf_counter() - started - evaluating
    curve.append([model.step_index, _knn(trainer, model.backbone)])
    return {"knn_top1_init": curve[0][1], "knn_top1": curve[-1][1], "knn_curve": curve, "final_loss": float(loss),
            "steps": model.step_index, "train_seconds": seconds,
            "images_per_second": model.step_index * run.batch_size / seconds}

