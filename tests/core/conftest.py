"""Fixtures of the core tests: a toy plugin, fake installed distributions, and ways to run the CLI.

Every test gets a fresh :class:`PluginHost` and a clean environment: no global plugin manager, no
``SSLCORE_*`` variables from the caller, and (where a test asks for it) none of the built-in components,
so that exact messages do not depend on what the built-ins register.
"""

import functools
import importlib.metadata
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import attrs
import pytest
from attrs import validators as v

from sslcore import hookimpl
from sslcore.cli import main
from sslcore.console import DEBUG_ENV
from sslcore.plugins import AUTOLOAD_ENV, BLOCK_ENV, BUILTIN_PLUGINS, PluginHost

#: A complete recipe using only the toy plugin's components.
BASE_RECIPE = """\
[run]
batch_size = 8
steps = 2

[data]
kind = "toy"

[views]
kind = "toy"

[backbone]
kind = "toy"
width = 8

[method]
kind = "toy"

[optimizer]
kind = "sgd"
base_lr = 0.1
"""


# --- the toy plugin: one component of every kind, configs using every allowed field type ----------------------


@attrs.frozen(kw_only=True)
class ToyStem:
    """A nested options table."""

    channels: int = attrs.field(default=3, validator=v.gt(0))
    scale: float = 1.0


@attrs.frozen(kw_only=True)
class ToyBackboneConfig:
    """Options of the toy backbone."""

    width: int = attrs.field(default=8, validator=v.gt(0))
    depth: int = 2
    dropout: float = attrs.field(default=0.0, validator=[v.ge(0), v.lt(1)])
    pretrained: bool = False
    name: str = "toy"
    norm: Literal["batch", "layer", "none"] = "batch"
    out_dim: int | None = None
    dims: tuple[int, ...] = (4, 8)
    stem: ToyStem = attrs.Factory(ToyStem)

    def __attrs_post_init__(self) -> None:
        if self.depth > self.width:
            raise ValueError(f"depth must not exceed width, got depth={self.depth} and width={self.width}")


@attrs.frozen(kw_only=True)
class ToySizeConfig:
    """A single positive size."""

    size: int = attrs.field(default=16, validator=v.gt(0))


@attrs.frozen(kw_only=True)
class ToyLossConfig:
    """A temperature."""

    temperature: float = attrs.field(default=0.1, validator=v.gt(0))


@attrs.frozen(kw_only=True)
class ToyEmpty:
    """No options."""


@attrs.frozen
class Built:
    """What a toy factory returns: the validated config and the runtime arguments it was called with."""

    config: Any
    runtime: dict[str, Any]


def build_toy(config: Any, **runtime: Any) -> Built:
    """A toy component that remembers how it was built."""
    return Built(config, runtime)


@hookimpl
def _backbones(registry):
    registry.add("toy", build_toy, ToyBackboneConfig)


@hookimpl
def _heads(registry):
    registry.add("toy_mlp", build_toy, ToySizeConfig)


@hookimpl
def _key_stores(registry):
    registry.add("toy_queue", build_toy, ToySizeConfig)


@hookimpl
def _target_updaters(registry):
    registry.add("toy_ema", build_toy, ToyEmpty)


@hookimpl
def _losses(registry):
    registry.add("toy_loss", build_toy, ToyLossConfig)


@hookimpl
def _methods(registry):
    registry.add("toy", build_toy, ToyEmpty)


@hookimpl
def _datasets(registry):
    registry.add("toy", build_toy, ToySizeConfig)


@hookimpl
def _transforms(registry):
    registry.add("toy", build_toy, ToyEmpty)


@hookimpl
def _evaluators(registry):
    registry.add("toy_knn", build_toy, ToySizeConfig)


@hookimpl
def _sample_buffers(registry):
    registry.add("toy_buffer", build_toy, ToySizeConfig)


@hookimpl
def _attacks(registry):
    registry.add("toy_attack", build_toy, ToySizeConfig)


def plugin_module(name: str, **functions: Callable[..., Any]) -> ModuleType:
    """A plugin module named ``name`` whose attributes are ``functions`` (e.g. hook implementations)."""
    module = ModuleType(name)
    for attribute, function in functions.items():
        setattr(module, attribute, function)
    return module


def make_toy_plugin() -> ModuleType:
    """The toy plugin; its config classes are attributes too (``toy.ToyBackboneConfig``)."""
    return plugin_module(
        "toy_plugin",
        ToyBackboneConfig=ToyBackboneConfig,
        ToyStem=ToyStem,
        ToySizeConfig=ToySizeConfig,
        ToyLossConfig=ToyLossConfig,
        ToyEmpty=ToyEmpty,
        Built=Built,
        build_toy=build_toy,
        sslcore_register_backbones=_backbones,
        sslcore_register_heads=_heads,
        sslcore_register_key_stores=_key_stores,
        sslcore_register_target_updaters=_target_updaters,
        sslcore_register_losses=_losses,
        sslcore_register_methods=_methods,
        sslcore_register_datasets=_datasets,
        sslcore_register_transforms=_transforms,
        sslcore_register_evaluators=_evaluators,
        sslcore_register_attacks=_attacks,
        sslcore_register_sample_buffers=_sample_buffers,
    )


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (AUTOLOAD_ENV, BLOCK_ENV, DEBUG_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block the built-in components, so registries hold only what a test registers."""
    monkeypatch.setenv(BLOCK_ENV, ",".join(BUILTIN_PLUGINS))


@pytest.fixture
def make_plugin() -> Callable[..., ModuleType]:
    """``make_plugin(name, **attributes)``: a plugin module, e.g. with hook implementations."""
    return plugin_module


@pytest.fixture
def toy_plugin() -> ModuleType:
    return make_toy_plugin()


@pytest.fixture
def toy_host(toy_plugin: ModuleType) -> PluginHost:
    """A fresh host with the built-ins and the toy plugin, nothing installed."""
    return PluginHost(autoload=False, extra_plugins=[("toy", toy_plugin)])


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[..., Path]:
    """``write_recipe(text=BASE_RECIPE, name="recipe.toml") -> path``; text is dedented."""

    def write(text: str = BASE_RECIPE, name: str = "recipe.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


# --- fake installed distributions ---------------------------------------------------------------------------


class FakeSite:
    """A directory of fake installed distributions (``NAME-VERSION.dist-info`` plus modules)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.modules: list[str] = []

    def install(self, name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
        """A distribution ``name`` whose ``sslcore`` entry points map plugin names to the given modules."""
        info = self.path / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = ["[sslcore]", *(f"{plugin} = {module}" for plugin, module in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in modules.items():
            (self.path / f"{module}.py").write_text(textwrap.dedent(source))
            self.modules.append(module)

    def entry_points(self, **selection: Any) -> importlib.metadata.EntryPoints:
        """Entry points of this directory's distributions only (what ``importlib.metadata`` would find)."""
        found = [ep for dist in importlib.metadata.distributions(path=[str(self.path)]) for ep in dist.entry_points]
        return importlib.metadata.EntryPoints(found).select(**selection)


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterable[FakeSite]:
    """Fake distributions importable in this process; entry points are discovered from them alone."""
    site = FakeSite(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site.path))
    monkeypatch.setattr(importlib.metadata, "entry_points", site.entry_points)
    yield site
    for module in site.modules:
        sys.modules.pop(module, None)


# --- running the CLI ----------------------------------------------------------------------------------------


@attrs.frozen
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """``cli(argv, plugins=None)`` runs ``sslcore`` in this process.

    With ``plugins`` (``[(name, module)]``), its plugin host loads exactly those besides the built-ins.
    """

    def run(argv: list[str], plugins: list[tuple[str, Any]] | None = None) -> Result:
        if plugins is not None:
            monkeypatch.setattr("sslcore.cli.PluginHost", functools.partial(PluginHost, autoload=False, extra_plugins=plugins))
        capsys.readouterr()
        try:
            main([str(arg) for arg in argv])
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def cli_subprocess(tmp_path: Path) -> Callable[..., Result]:
    """``cli_subprocess(args, pythonpath=(), **env)`` runs ``python -m sslcore.cli ARGS`` in a new interpreter.

    It starts in ``tmp_path`` with no ``SSLCORE_*`` variables but those given, and by default with the
    built-ins blocked (they are then not even imported, which saves seconds per interpreter).
    """
    return functools.partial(run_subprocess, cwd=tmp_path)


def run_subprocess(args: list[str], *, cwd: Path, pythonpath: Iterable[Path] = (), **env: str) -> Result:
    environ = {k: val for k, val in os.environ.items() if not k.startswith("SSLCORE_") and k != "PYTHONPATH"}
    environ[BLOCK_ENV] = ",".join(BUILTIN_PLUGINS)
    environ.update(env)
    if pythonpath:
        environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    done = subprocess.run(
        [sys.executable, "-m", "sslcore.cli", *map(str, args)],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Result(done.returncode, done.stdout, done.stderr)
