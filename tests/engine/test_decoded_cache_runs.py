"""Runs with the decoded-image cache (``[data] cache = "decoded"``): the same losses as without it, the entry reused
by a second run, and built once by a run on two processes, both of which read it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from engine_support import recipe_text, run_sslcore

HERE = Path(__file__).parent


def _losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_training_with_the_cache_gives_the_losses_of_training_without_it(tmp_path, plugin_env):
    data = 'kind = "digits"\ntrain_limit = 64\ncache = "{cache}"\ncache_dir = "' + str(tmp_path / "cache") + '"'
    outputs = {}
    for name, cache in (("plain", "none"), ("cached", "decoded"), ("again", "decoded")):
        recipe = tmp_path / f"{name}.toml"
        recipe.write_text(recipe_text(tmp_path / name, steps=3, batch=16, data=data.format(cache=cache)))
        result = run_sslcore([str(recipe)], plugin_env)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[name] = result.stdout
    plain, cached, again = (_losses(tmp_path / name / "r") for name in ("plain", "cached", "again"))
    assert len(plain) == 3 and cached == plain and again == plain
    assert "decoded-image cache: built" not in outputs["plain"]
    assert "decoded-image cache: built" in outputs["cached"]
    assert "decoded-image cache" not in outputs["again"]  # the second run reuses the entry


@pytest.mark.distributed
def test_two_processes_build_the_entry_once_and_both_read_it(tmp_path, plugin_env):
    import subprocess

    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
    ]
    result = subprocess.run(
        [*launcher, str(HERE / "decoded_cache_ranks.py"), str(tmp_path / "cache"), str(tmp_path)],
        env=dict(plugin_env, ACCELERATE_USE_CPU="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["processes"]) for r in ranks] == [(0, 2), (1, 2)]
    assert all(r["same_pixels"] for r in ranks) and ranks[0]["entry"] == ranks[1]["entry"]
    assert result.stdout.count("decoded-image cache: built") == 1
    assert len(list((tmp_path / "cache").iterdir())) == 1
