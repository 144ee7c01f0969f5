"""The canonical paper recipes run under ``accelerate launch`` on 1 and 2 CPU processes with CPU-sized overrides.

Only sizes change (tiny ViT / ResNet, 32 px crops, small heads, batch 16, 3 steps, CIFAR-10 subsets); every
method setting, schedule and optimizer of the recipe stays as written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engine_support import CIFAR, accelerate_launch

REPO = Path(__file__).parents[2]

COMMON = [
    "run.steps=3", "run.batch_size=16", "run.num_workers=0", 'run.mixed_precision="no"', "run.checkpoint_every=2",
    "run.log_every=1", "run.progress=false",
    'data.kind="parquet"', f'data.train="{CIFAR / "train.parquet"}"', f'data.test="{CIFAR / "test.parquet"}"',
    "data.train_limit=256", "data.test_limit=64",
    "eval.k=20", "eval.limit_train=256", "eval.limit_eval=64", "eval.num_workers=0", "eval.batch_size=64",
    "eval.transform={size = 32}",
]
TINY_VIT = ['backbone.name="vit_tiny_patch16_224"', "backbone.img_size=32"]
MULTICROP = ["views.global_size=32", "views.local_size=16", "views.local_crops=2"]
SIZES = {
    "mocov3_vit": [*TINY_VIT, "views.size=32", "heads.projector.hidden_dim=64", "heads.projector.out_dim=32",
                   "heads.predictor.hidden_dim=64", "heads.predictor.out_dim=32"],
    "swav_resnet50": ['backbone.name="resnet18"', *MULTICROP, "heads.projector.hidden_dim=64",
                      "heads.projector.out_dim=32", "heads.prototypes.num_prototypes=30",
                      "method.freeze_prototypes_niters=2"],
    "dino_vit_small": [*TINY_VIT, *MULTICROP, "heads.projector.hidden_dim=64", "heads.projector.bottleneck_dim=32",
                       "heads.projector.out_dim=128"],
}


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.skipif(not CIFAR.is_dir(), reason="../shared/data/cifar10 is missing")
@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("recipe", sorted(SIZES))
def test_paper_recipe_runs_under_accelerate_launch(recipe, processes, tmp_path, plugin_env):
    overrides = [f'run.output_dir="{tmp_path}"', *COMMON, *SIZES[recipe]]
    result = accelerate_launch([str(REPO / "recipes" / f"{recipe}.toml"), *overrides], plugin_env,
                               processes=processes, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / recipe
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["processes"] == processes
    assert summary["steps"] == 3
    assert math.isfinite(summary["final_loss"])
    assert 0.0 <= summary["knn_top1"] <= 100.0
    assert (run_dir / "backbone.safetensors").is_file()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000002", "step_00000003"]
