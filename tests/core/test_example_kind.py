"""Acceptance: a third-party package adds a component kind (``noise``) and a method that uses it.

The example ``docs/examples/sslcore-example-kind`` is pip-installed into a throwaway ``--target`` directory and used
from new interpreters with that directory on ``PYTHONPATH`` (as test_external_plugin.py does): listed, checked and
trained, while no file of the core names the kind.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "sslcore-example-kind"
CORE = Path(__file__).resolve().parents[2] / "sslcore"
PROVIDER = "sslcore-example-kind 0.1.0"

SNIPPET = """\
import sys
from sslcore.cli import main

for argv in (["list"], ["list", "noise"], ["check", "noisy_pair_digits"], ["plugins"]):
    print("$ sslcore " + " ".join(argv))
    main(argv)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    source = tmp_path_factory.mktemp("source") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--no-cache-dir", "--disable-pip-version-check", "--quiet", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (target / "sslcore_example_kind" / "recipes" / "noisy_pair_digits.toml").is_file()
    yield target


def _run(args: list[str], site: Path, cwd: Path, *, blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``args`` with the example on ``PYTHONPATH`` and every other installed plugin blocked."""
    installed = {ep.name for ep in importlib.metadata.entry_points(group="sslcore")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSLCORE_")}
    env.update(PYTHONPATH=str(site), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               SSLCORE_BLOCK_PLUGINS=",".join(sorted(installed - {"noise", "noisy_pair"}) + list(blocked)))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_listed_checked_and_trained(site: Path, tmp_path: Path) -> None:
    done = _run([sys.executable, "-c", SNIPPET], site, tmp_path)
    assert done.returncode == 0, done.stderr
    listing, noise, check, plugins = done.stdout.split("$ sslcore ")[1:]
    header = (f"noise:  {PROVIDER}  [noise], [noises.<name>]  "
              "Register input noises, modules that map images to noised images of the same shape.")
    gaussian = f"  gaussian                {PROVIDER}  Adds Gaussian noise to images while training; the identity in eval mode."
    assert noise.splitlines()[1:] == [header, gaussian]
    assert header in listing.splitlines() and gaussian in listing.splitlines()
    method = f"  noisy_pair              {PROVIDER}  Two noised views, one backbone, negative cosine (uses the noise kind)."
    assert method in listing.splitlines()
    assert '\n[noise]\nkind = "gaussian"\nstd = 0.1\n' in check
    assert f"noise  ({PROVIDER})  sslcore_add_kinds, sslcore_register_noises" in plugins
    assert f"noisy_pair  ({PROVIDER})  sslcore_register_methods, sslcore_register_recipes" in plugins

    out = tmp_path / "runs"
    done = _run([sys.executable, "-m", "sslcore.run", "noisy_pair_digits", f"run.output_dir={out}", "run.steps=3",
                 "run.batch_size=16", "run.log_every=1", "run.progress=false", "noise.std=0.2"], site, tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = out / "noisy_pair_digits"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)
    assert '[noise]\nkind = "gaussian"\nstd = 0.2\n' in (run_dir / "recipe.toml").read_text()
    assert (run_dir / "backbone.safetensors").is_file()


def test_without_the_plugin_that_adds_it_the_kind_is_unknown(site: Path, tmp_path: Path) -> None:
    recipe = site / "sslcore_example_kind" / "recipes" / "noisy_pair_digits.toml"
    done = _run([sys.executable, "-m", "sslcore.cli", "check", str(recipe)], site, tmp_path, blocked=("noise",))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {recipe}: unknown table [noise]; known: ")


def test_no_core_file_names_the_kind() -> None:
    for path in CORE.rglob("*.py"):
        text = path.read_text()
        for name in ("sslcore_register_noises", "noisy_pair", '"noise"', "[noise", "noises"):
            assert name not in text, (path, name)
