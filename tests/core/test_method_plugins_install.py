"""Acceptance: installing a method plugin makes its recipes runnable; without it, its method is an error that
says which package to install.

Interpreters here start without site-packages (``python -S``) and add a *view* of this venv's site-packages: a
directory of links to every entry except the method plugins' (``sslcore_plugin_*``), so the plugins are absent
exactly as after ``pip uninstall``. The plugins are then ``pip install``-ed (wheels, not editable) into a
throwaway ``--target`` directory and added beside the view.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = sorted(path for path in (REPO / "plugins").iterdir() if (path / "pyproject.toml").is_file())
PLUGIN_PREFIX = "sslcore_plugin_"

#: Runs sslcore commands in one interpreter: adds the site directories, then prints {label: [exit code, stderr]}.
LAUNCHER = """\
import contextlib, io, json, site, sys
for directory in sys.argv[1].split("|"):
    site.addsitedir(directory)
from sslcore.cli import main

results = {}
for label, *argv in json.loads(sys.argv[2]):
    stderr = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit as exit:
            code = exit.code
    results[label] = [code, stderr.getvalue()]
print(json.dumps(results))
"""


def smoke_recipe(plugin: Path) -> Path:
    """The plugin's ``<name>_smoke`` recipe (a plugin may ship other smoke recipes, e.g. for a second variant)."""
    (recipe,) = plugin.glob(f"src/*/recipes/{plugin.name.removeprefix('sslcore-plugin-')}_smoke.toml")
    return recipe


def method_kind(plugin: Path) -> str:
    return tomllib.loads(smoke_recipe(plugin).read_text())["method"]["kind"]


def run_commands(site_dirs: list[Path], commands: list[list[str]], cwd: Path) -> dict[str, list]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SSLCORE_", "PYTHON"))}
    env.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER, "|".join(map(str, site_dirs)), json.dumps(commands)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(this venv's site-packages without the method plugins, the plugins pip-installed into a target dir)."""
    venv_site = Path(sysconfig.get_paths()["purelib"])
    # Named site-packages: dill (datasets' fingerprinting) pickles modules from elsewhere by value.
    view = tmp_path_factory.mktemp("without_plugins") / "site-packages"
    view.mkdir()
    for entry in venv_site.iterdir():
        if PLUGIN_PREFIX not in entry.name:
            (view / entry.name).symlink_to(entry)
    sources = tmp_path_factory.mktemp("sources")
    for plugin in PLUGINS:
        shutil.copytree(plugin, sources / plugin.name,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    target = tmp_path_factory.mktemp("plugins_site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir",
         "--disable-pip-version-check", "--quiet", "--target", str(target),
         *(str(sources / plugin.name) for plugin in PLUGINS)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    installed = sorted(path.name.split("-")[0] for path in target.glob(f"{PLUGIN_PREFIX}*.dist-info"))
    assert installed == sorted(plugin.name.replace("-", "_") for plugin in PLUGINS)
    return view, target


@pytest.mark.slow
def test_without_the_plugin_its_method_is_an_error_naming_the_package(sites, tmp_path: Path) -> None:
    view, _ = sites
    commands = [[plugin.name, "check", str(smoke_recipe(plugin))] for plugin in PLUGINS]
    results = run_commands([view], commands, tmp_path)
    for plugin in PLUGINS:
        code, stderr = results[plugin.name]
        kind = method_kind(plugin)
        assert code == 2, (plugin.name, stderr)
        assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
        assert f"[method.kind]: unknown method '{kind}'" in stderr, stderr
        # The hint names the plugin that provides the method: CLAE's recipes run SimCLR's and InvaSpread's methods.
        provider = f"sslcore-plugin-{kind}"
        assert f"`pip install {provider}`" in stderr and provider in {p.name for p in PLUGINS}, stderr


@pytest.mark.slow
def test_installed_plugins_make_their_recipes_runnable(sites, tmp_path: Path) -> None:
    view, target = sites
    recipes = [path.stem for plugin in PLUGINS for path in plugin.glob("src/*/recipes/*.toml")]
    checks = [[name, "check", name] for name in recipes]
    runs = [[f"run {plugin.name}", "run", smoke_recipe(plugin).stem, "run.steps=1", "run.progress=false",
             f'run.output_dir="{tmp_path / "runs"}"', "run.checkpoint_every=0"] for plugin in PLUGINS]
    results = run_commands([view, target], checks + runs, tmp_path)
    assert {label: result for label, result in results.items() if result[0] != 0} == {}
    for plugin in PLUGINS:
        summary = json.loads((tmp_path / "runs" / smoke_recipe(plugin).stem / "summary.json").read_text())
        assert summary["steps"] == 1
