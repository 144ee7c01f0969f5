"""Acceptance: a third-party package adds a key store through the ``sslcore`` entry-point group.

The example package ``docs/examples/sslcore-fifo-keystore`` is pip-installed into a throwaway directory (never
into this venv) and used from new interpreters that have that directory on ``PYTHONPATH``: entry points are
discovered from the ``*.dist-info`` it leaves there, exactly as for a package installed in site-packages.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from sslcore.plugins import BUILTIN_PLUGINS

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "sslcore-fifo-keystore"
BIN = Path(sys.executable).parent

#: The rest of a recipe, from a fake distribution installed beside the example: nothing else is needed.
TOYS = """\
import attrs
import sslcore


@attrs.frozen(kw_only=True)
class Empty:
    pass


def build(config, **runtime):
    return None


@sslcore.hookimpl
def sslcore_register_methods(registry):
    registry.add("toy", build, Empty)


@sslcore.hookimpl
def sslcore_register_backbones(registry):
    registry.add("toy", build, Empty)


@sslcore.hookimpl
def sslcore_register_datasets(registry):
    registry.add("toy", build, Empty)


@sslcore.hookimpl
def sslcore_register_transforms(registry):
    registry.add("toy", build, Empty)
"""

RECIPE = """\
[run]
batch_size = 8
steps = 1

[data]
kind = "toy"

[views]
kind = "toy"

[backbone]
kind = "toy"

[method]
kind = "toy"

[optimizer]
kind = "sgd"
base_lr = 0.1

[key_store]
kind = "fifo"
size = 16
normalize = false
"""

SNIPPET = """\
import json, sys
import torch
from sslcore.cli import main
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve

main(["list", "key_store"])
main(["check", sys.argv[1]])
main(["plugins"])
recipe = resolve(sys.argv[1], PluginHost(), ["key_store.size=32", "key_store.normalize=true"])
spec = recipe.components["key_store"]
store = spec.build(dim=8, num_samples=100)
print(json.dumps({
    "config": repr(spec.config),
    "type": type(store).__module__ + "." + type(store).__name__,
    "sharding": store.sharding,
    "buffers": {name: list(buffer.shape) for name, buffer in store.named_buffers()},
    "norms": store.read(torch.zeros(1, 8)).bank.norm(dim=1).tolist(),
}))
"""


def _fifo_traces(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if "fifo" in path.name.lower())


def _installed_plugin_names() -> list[str]:
    """Plugins installed in this environment: blocked in the subprocesses, so that only ours run."""
    names = {ep.name for dist in importlib.metadata.distributions() for ep in dist.entry_points if ep.group == "sslcore"}
    return sorted(names - {"fifo", "toys"})


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The example pip-installed into a temporary directory (``--target``), and the toys' directory."""
    venv_site = Path(sysconfig.get_paths()["purelib"])
    assert _fifo_traces(venv_site) == []
    source = tmp_path_factory.mktemp("source") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--no-cache-dir", "--disable-pip-version-check", "--quiet", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (target / "sslcore_fifo_keystore.py").is_file()
    # The venv and the example in the docs are untouched: no trace of the package, no build leftovers.
    assert _fifo_traces(venv_site) == []
    assert not [p.name for p in EXAMPLE.iterdir() if p.name == "build" or p.name.endswith(".egg-info")]
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("sslcore-fifo-keystore")
    toys = tmp_path_factory.mktemp("toys")
    (toys / "acceptance_toys.py").write_text(TOYS)
    info = toys / "acceptance_toys-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acceptance-toys\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[sslcore]\ntoys = acceptance_toys\n")
    yield target, toys
    assert _fifo_traces(venv_site) == []


def _run(
    args: list[str], installed: tuple[Path, Path], cwd: Path, *, builtins: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` with the installed example on ``PYTHONPATH``; other installed plugins are blocked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSLCORE_")}
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in installed)
    blocked = _installed_plugin_names() + ([] if builtins else list(BUILTIN_PLUGINS))
    env["SSLCORE_BLOCK_PLUGINS"] = ",".join(blocked)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_listed_with_its_provider_resolved_and_built(installed, tmp_path: Path) -> None:
    recipe = tmp_path / "fifo.toml"
    recipe.write_text(RECIPE)
    done = _run([sys.executable, "-c", SNIPPET, str(recipe)], installed, tmp_path, builtins=False)
    assert done.returncode == 0, done.stderr
    *printed, result = done.stdout.strip().splitlines()
    # `sslcore list key_store` shows the store with its provider: distribution and version. (The built-ins
    # are blocked here to save time; the next test runs with them.)
    assert printed[0] == "key_store:"
    assert [line for line in printed if line.startswith("  fifo ")] == [
        "  fifo                    sslcore-fifo-keystore 0.1.0  A FIFO of the most recent keys, replicated on every rank."
    ]
    # `sslcore check` printed the resolved table with every option.
    assert '[key_store]\nkind = "fifo"\nsize = 16\nnormalize = false\n' in "\n".join(printed)
    # `sslcore plugins` names the plugin, its distribution and version, and its hook.
    assert "fifo  (sslcore-fifo-keystore 0.1.0)  sslcore_register_key_stores" in printed
    # The factory built the store from the validated options, overrides applied.
    built = json.loads(result)
    assert built["config"] == "FifoConfig(size=32, normalize=True)"
    assert built["type"] == "sslcore_fifo_keystore.FifoKeyStore"
    assert built["sharding"] == "replicated"
    assert built["buffers"] == {"queue": [32, 8], "ptr": []}
    assert built["norms"] == pytest.approx([1.0] * 32)


def test_invalid_option_is_one_line(installed, tmp_path: Path) -> None:
    """Through the installed ``sslcore`` command, built-ins loaded: one line on stderr, exit code 2."""
    recipe = tmp_path / "fifo.toml"
    recipe.write_text(RECIPE)
    done = _run([str(BIN / "sslcore"), "check", str(recipe), "key_store.size=0"], installed, tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"error: {recipe} [key_store.size]: must be > 0: 0\n"
    assert done.stdout == ""


@pytest.mark.slow
@pytest.mark.distributed
def test_the_example_passes_its_own_tests(installed, tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    shutil.copytree(EXAMPLE / "tests", tests)
    shutil.copy2(EXAMPLE / "pyproject.toml", tmp_path / "pyproject.toml")  # its pytest settings
    done = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tests)],
        installed,
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "skipped" not in done.stdout
