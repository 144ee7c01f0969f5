"""Training with ``[views] pipeline = "batched"``: the views are made per batch in the loader's workers (CPU)."""

from __future__ import annotations

import math

from engine_support import recipe_text, run_sslcore
from test_exact_resume import SHORT, forget_the_end, losses, small, train


def test_a_run_with_batched_views_trains(tmp_path, plugin_env):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=6, batch=16))
    result = run_sslcore([str(recipe), "views.pipeline=batched", "run.num_workers=2"], plugin_env)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "out" / "r"
    logged = list(losses(run_dir).values())
    assert len(logged) == 6 and all(math.isfinite(loss) for loss in logged)
    assert len(set(logged)) > 1
    assert 'pipeline = "batched"' in (run_dir / "recipe.toml").read_text()


def test_a_view_transform_without_a_batched_path_is_a_config_error(tmp_path, plugin_env):
    """The evaluation views (resize and centre crop, nothing random) have no batched path: the option is unknown there."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out"))
    result = run_sslcore([str(recipe), "views.kind=eval", "views.pipeline=batched"], plugin_env)
    assert result.returncode == 2
    assert "[views.pipeline]: unknown key 'pipeline'" in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_resume_with_batched_views_is_exact(tmp_path, capsys):
    """BYOL's smoke recipe (blur and solarization) with batched views, resumed from its mid-epoch step-3 checkpoint,
    logs the losses of the uninterrupted run."""
    overrides = [*SHORT, *small("byol_smoke"), "views.pipeline=batched", f"run.output_dir={tmp_path}"]
    run_dir = tmp_path / "byol_smoke"
    train("byol_smoke", overrides)
    straight = losses(run_dir)
    forget_the_end(run_dir)
    capsys.readouterr()
    train("byol_smoke", overrides)
    assert "at step 3" in capsys.readouterr().out
    resumed = losses(run_dir)
    assert {s: resumed[s] for s in (4, 5, 6)} == {s: straight[s] for s in (4, 5, 6)}
