"""What a user sees of a finished run: progress lines without a terminal, and ``sslcore embed`` of its backbone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from engine_support import HERE, recipe_text, run_sslcore

DOCS = HERE.parents[1] / "docs" / "cli.md"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess, dict[str, str]]:
    """A 3-step digits run with the progress on, its output piped (not a terminal)."""
    tmp = tmp_path_factory.mktemp("run")
    site = tmp / "site"
    (site / "sslcore_engine_test-0.1.dist-info").mkdir(parents=True)
    shutil.copy(HERE / "engine_test_plugin.py", site / "engine_test_plugin.py")
    (site / "sslcore_engine_test-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sslcore-engine-test\nVersion: 0.1\n")
    (site / "sslcore_engine_test-0.1.dist-info" / "entry_points.txt").write_text(
        "[sslcore]\npairwise = engine_test_plugin\n")
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    (tmp / "r.toml").write_text(recipe_text(tmp / "out", steps=3, batch=8))
    result = run_sslcore([str(tmp / "r.toml"), "run.progress=true", "data.train_limit=64", "data.test_limit=40"],
                         env)
    assert result.returncode == 0, result.stderr
    return tmp / "out" / "r", result, env


def test_a_plain_line_per_log_step_without_a_terminal(run) -> None:
    _, result, _ = run
    lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    pattern = r"step (\d)/3 epoch 0 loss \d+\.\d{4} lr [0-9.e+-]+ \d+ img/s"
    assert [re.fullmatch(pattern, line).group(1) for line in lines] == ["1", "2", "3"], result.stdout


def test_embed_writes_one_embedding_per_image_and_the_docs_search_runs(run, tmp_path, monkeypatch) -> None:
    run_dir, _, env = run
    out = tmp_path / "embeddings.parquet"
    command = [sys.executable, "-m", "sslcore.cli", "embed", str(run_dir), "--out", str(out), "--split", "test",
               "--limit", "30", "--batch-size", "16"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"30 embeddings of dimension 512 written to {out}" in done.stdout
    embeddings = datasets.Dataset.from_parquet(str(out))
    assert embeddings.column_names == ["index", "embedding", "label"]
    assert embeddings["index"] == list(range(30)) and len(embeddings[0]["embedding"]) == 512
    assert set(embeddings["label"]) <= set(range(10))
    # the nearest-neighbour example of docs/cli.md, as written, on this file: the top similarity is an image's own
    example = DOCS.read_text().split("<!-- embed-search -->\n```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(example, namespace)
    scores, neighbours = namespace["scores"], namespace["neighbours"]
    assert neighbours.shape == (5, 4) and torch.allclose(scores[:, 0], torch.ones(5), atol=1e-4)
    assert bool((scores[:, :-1] >= scores[:, 1:]).all())


def test_embed_of_a_parquet_path_keeps_its_labels(run, tmp_path) -> None:
    import engine_test_plugin

    from sslcore.data.sources import DigitsSourceConfig, build_digits
    from sslcore.evaluation.embed import embed_run
    from sslcore.plugins import PluginHost

    source = tmp_path / "mine.parquet"
    build_digits(DigitsSourceConfig(test_limit=6), "test").to_parquet(str(source))
    host = PluginHost(autoload=False, extra_plugins=[("pairwise", engine_test_plugin)])
    embeddings = embed_run(str(run[0]), str(tmp_path / "e.parquet"), [str(source)], host, batch_size=4)
    assert embeddings["index"] == list(range(6))
    assert embeddings["label"] == datasets.Dataset.from_parquet(str(source))["label"]
