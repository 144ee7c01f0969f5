"""What a run shows of itself: curves.png with loss, learning rate, images/s and every kNN evaluation (several by
default), and ``sslcore eval`` results kept in the run directory."""

from __future__ import annotations

import json
import subprocess
import sys

from engine_support import recipe_text, run_sslcore
from PIL import Image

from sslcore.engine.curves import curve_series
from sslcore.engine.run_log import MetricsLog
from sslcore.evaluation.saved import EVALUATIONS_FILE


def test_curves_show_every_series_and_eval_results_are_saved(tmp_path, plugin_env) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=5, batch=8, evaluate=True))  # no run.eval_every
    assert "eval_every" not in recipe.read_text()
    trained = run_sslcore(
        [str(recipe), "data.train_limit=200", "eval.limit_train=200", "eval.limit_eval=50"], plugin_env
    )
    assert trained.returncode == 0, trained.stderr
    run_dir = tmp_path / "out" / "r"

    series = curve_series(MetricsLog(run_dir / "metrics.jsonl").read())
    assert [step for step, _ in series["evaluation top-1 (%)"]["knn_top1"]] == [0, 1, 2, 3, 4, 5]  # auto eval_every
    for title, key in (("loss", "loss"), ("learning rate", "lr"), ("images / s", "images_per_second")):
        assert [step for step, _ in series[title][key]] == [1, 2, 3, 4, 5], title
    with Image.open(run_dir / "curves.png") as png:
        assert png.format == "PNG" and png.size == (1000, 600)

    command = [
        sys.executable,
        "-m",
        "sslcore.cli",
        "eval",
        "knn",
        str(run_dir),
        "eval.k=5",
        "eval.limit_train=200",
        "eval.limit_eval=50",
    ]
    evaluated = subprocess.run(command, check=False, env=plugin_env, capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    printed = json.loads(evaluated.stdout.strip().splitlines()[-1])
    saved = [json.loads(line) for line in (run_dir / EVALUATIONS_FILE).read_text().splitlines()]
    assert len(saved) == 1 and saved[0]["results"] == printed
    assert saved[0]["eval"]["kind"] == "knn" and saved[0]["eval"]["k"] == 5
