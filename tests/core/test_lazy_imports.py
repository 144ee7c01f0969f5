"""`sslcore list`, `recipes`, `plugins` and `check` import no torch, torchvision, timm or datasets: registrations name
their factories as "module:function" strings, imported on first build, and config classes live in light modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import attrs
import pytest

from sslcore.errors import SslcoreError
from sslcore.plugins import PluginHost
from sslcore.registry import Provider, Registry

HEAVY = ("torch", "torchvision", "timm", "datasets")


@attrs.frozen(kw_only=True)
class Options:
    """Options of a component whose factory is imported late.

    Not shown by `sslcore list`."""

    size: int = 1


def test_string_factory_is_imported_on_first_build() -> None:
    registry = Registry("loss")
    registry.provider = Provider("mine", "1.0")
    entry = registry.add("late", "json:dumps", Options)
    assert (
        entry.factory == "json:dumps" and entry.description == "Options of a component whose factory is imported late."
    )
    assert entry.load() is json.dumps
    assert entry.build({"a": 1}, sort_keys=True) == '{"a": 1}'
    assert registry.add("given", "json:dumps", Options, description="mine").description == "mine"


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            "sslcore_no_such_module:build",
            r"cannot import its factory 'sslcore_no_such_module:build': ModuleNotFoundError",
        ),
        ("json:no_such_function", r"cannot import its factory 'json:no_such_function': AttributeError"),
    ],
)
def test_a_factory_that_cannot_be_imported_names_plugin_and_path(factory: str, message: str) -> None:
    registry = Registry("loss")
    registry.provider = Provider("sslcore-plugin-broken", "0.2")
    entry = registry.add("broken", factory, Options)  # registering imports nothing
    with pytest.raises(SslcoreError, match=rf"^loss 'broken' from plugin sslcore-plugin-broken 0.2: {message}"):
        entry.build(Options())


@pytest.mark.parametrize("factory", ["json.dumps", "json:", ":dumps", "json:dumps:x", "a-b:c"])
def test_a_malformed_factory_path_is_refused_at_registration(factory: str) -> None:
    registry = Registry("loss")
    with pytest.raises(SslcoreError, match=r"which is not of the form 'package.module:function'"):
        registry.add("bad", factory, Options)


def test_builtin_factories_all_import() -> None:
    """Every registered string names a real factory (of every installed plugin too): a typo fails here."""
    host = PluginHost()
    lazy = [entry for registry in host.registries for entry in registry if isinstance(entry.factory, str)]
    assert len(lazy) > 40
    assert all(callable(entry.load()) for entry in lazy)
    assert [entry.name for entry in lazy if not entry.description.endswith(".")] == []  # whole first lines


_COMMANDS = """
import contextlib, io, json, sys
from sslcore.cli import main
from sslcore.plugins import PluginHost

recipes = PluginHost().recipes.names()
commands = [["list"], ["list", "--fields"], ["list", "method"], ["recipes"], ["plugins"]]
commands += [["check", name] for name in recipes]
for argv in commands:
    with contextlib.redirect_stdout(io.StringIO()):
        main(argv)
print(json.dumps({"recipes": recipes, "heavy": [name for name in HEAVY if name in sys.modules]}))
"""


def test_listing_and_checking_import_no_torch() -> None:
    """With every plugin installed: list, list --fields, recipes, plugins and check of every shipped recipe."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SSLCORE_")}
    script = f"HEAVY = {HEAVY!r}\n" + textwrap.dedent(_COMMANDS)
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert "quickstart" in report["recipes"] and len(report["recipes"]) > 20  # the plugins' recipes were checked
    assert report["heavy"] == []


def test_plugin_packages_keep_their_public_names() -> None:
    """A plugin's package imports lazily, yet ``from sslcore_plugin_x import Name`` still works."""
    script = textwrap.dedent("""
        import sys
        import sslcore_plugin_dino, sslcore_plugin_simclr
        light = not any(name in sys.modules for name in ("torch", "timm"))
        from sslcore_plugin_dino import DINO, DINOConfig, same_size_runs
        from sslcore_plugin_simclr import SimCLRConfig, build_simclr
        print(light, DINO.__module__, DINOConfig.__module__, same_size_runs.__module__, callable(build_simclr),
              "DINO" in dir(sslcore_plugin_dino))
    """)
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "True",
        "sslcore_plugin_dino.method",
        "sslcore_plugin_dino.config",
        "sslcore.components.multicrop",
        "True",
        "True",
    ]
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        import sslcore_plugin_simclr

        sslcore_plugin_simclr.Nope  # noqa: B018
