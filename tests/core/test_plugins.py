"""The plugin host: entry-point discovery, switches from the environment, strict hooks, `sslcore plugins`.

Also the meta-tests: every hook spec is exercised here and has a heading in docs/writing-a-plugin.md.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import attrs
import pytest

from sslcore import hookimpl, hookspecs
from sslcore.errors import SslcoreError
from sslcore.plugins import BUILTIN_PLUGINS, PluginHost
from sslcore.registry import BUILTIN_KINDS, Provider

DOCS = Path(__file__).resolve().parents[2] / "docs" / "writing-a-plugin.md"
HOOK_NAMES = sorted(name for name in dir(hookspecs) if name.startswith("sslcore_"))

EXTRA = """\
import attrs
import sslcore

@attrs.frozen(kw_only=True)
class Config:
    pass

@sslcore.hookimpl
def sslcore_register_losses(registry):
    registry.add("extra_loss", lambda config: None, Config)

@sslcore.hookimpl
def sslcore_register_recipes(registry):
    pass
"""


@pytest.fixture
def extra_installed(fake_site):
    fake_site.install("fake-extra", "2.1", {"extra": "fake_extra_plugin"}, {"fake_extra_plugin": EXTRA})
    return fake_site


@pytest.mark.parametrize(
    ("environment", "argument", "loaded"),
    [
        ({}, None, True),
        ({"SSLCORE_DISABLE_PLUGIN_AUTOLOAD": "0"}, None, True),
        ({"SSLCORE_DISABLE_PLUGIN_AUTOLOAD": "1"}, None, False),
        ({"SSLCORE_DISABLE_PLUGIN_AUTOLOAD": "1"}, True, True),
        ({}, False, False),
    ],
)
def test_autoload_switch(extra_installed, monkeypatch, environment, argument, loaded) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    host = PluginHost(autoload=argument)
    assert ("extra_loss" in host.registries["loss"]) is loaded
    assert host.pm.has_plugin("extra") is loaded


def test_block_by_name(extra_installed, toy_plugin, monkeypatch) -> None:
    monkeypatch.setenv("SSLCORE_BLOCK_PLUGINS", " extra , toy,sslcore.recipes")
    host = PluginHost(extra_plugins=[("toy", toy_plugin)])
    assert "extra_loss" not in host.registries["loss"] and "toy" not in host.registries["backbone"]
    names = {info.name for info in host.plugins() if not info.note}
    assert not names & {"extra", "toy", "sslcore.recipes"}
    # an installed plugin is listed as blocked (from its entry point: it is not imported)
    assert [(info.name, info.distribution, info.note) for info in host.plugins() if info.note] == [
        ("extra", "fake-extra", "blocked")]
    assert set(BUILTIN_PLUGINS) - {"sslcore.recipes"} <= names


def test_a_blocked_builtin_is_not_imported(monkeypatch) -> None:
    monkeypatch.setitem(BUILTIN_PLUGINS, "sslcore.ghost", "sslcore_module_that_does_not_exist")
    with pytest.raises(ModuleNotFoundError):
        PluginHost(autoload=False)
    monkeypatch.setenv("SSLCORE_BLOCK_PLUGINS", "sslcore.ghost")
    assert "sslcore.ghost" not in {info.name for info in PluginHost(autoload=False).plugins()}


def test_blocking_a_broken_plugin_is_the_way_out(fake_site, monkeypatch) -> None:
    fake_site.install("fake-broken", "0.1", {"broken": "fake_broken_plugin"}, {"fake_broken_plugin": "1 / 0\n"})
    with pytest.raises(SslcoreError, match=r"^plugin 'broken' \(distribution fake-broken 0.1\) failed to import: "):
        PluginHost()
    monkeypatch.setenv("SSLCORE_BLOCK_PLUGINS", "broken")
    assert not PluginHost().pm.has_plugin("broken")


def test_sslcore_plugins_lists_versions_and_hooks(extra_installed, toy_plugin, cli, monkeypatch) -> None:
    monkeypatch.setattr("sslcore.cli.PluginHost", lambda **options: PluginHost(extra_plugins=[("toy", toy_plugin)], **options))
    result = cli(["plugins"])
    assert result.code == 0
    lines = result.out.splitlines()
    assert "extra  (fake-extra 2.1)  sslcore_register_losses, sslcore_register_recipes" in lines
    toy_hooks = ", ".join(sorted(kind.hook for kind in BUILTIN_KINDS))
    assert f"toy  (not from a distribution)  {toy_hooks}" in lines
    own = importlib.metadata.version("sslcore")
    assert f"sslcore.recipes  (sslcore {own})  sslcore_register_recipes" in lines
    assert [line.split()[0] for line in lines] == sorted(["extra", "toy", *BUILTIN_PLUGINS])


def test_plugin_info(extra_installed) -> None:
    info = {i.name: i for i in PluginHost().plugins()}["extra"]
    assert (info.distribution, info.version, info.hooks) == (
        "fake-extra",
        "2.1",
        ["sslcore_register_losses", "sslcore_register_recipes"],
    )
    assert PluginHost().provider("extra") == Provider("fake-extra", "2.1")


def test_implementations_may_take_fewer_arguments(make_plugin, no_builtins) -> None:
    calls = []

    @hookimpl
    def sslcore_register_losses():
        calls.append("called")

    PluginHost(autoload=False, extra_plugins=[("quiet", make_plugin("quiet", sslcore_register_losses=sslcore_register_losses))])
    assert calls == ["called"]


def test_only_functions_named_like_hooks_must_be_marked(make_plugin, no_builtins) -> None:
    host = PluginHost(autoload=False, extra_plugins=[("const", make_plugin("const", sslcore_version="1.0"))])
    assert host.pm.has_plugin("const")


def test_user_errors_from_a_hook_pass_through_unchanged(make_plugin, no_builtins) -> None:
    @hookimpl
    def sslcore_register_losses(registry):
        raise SslcoreError("the plugin explains itself", hint="do this")

    plugin = make_plugin("explaining", sslcore_register_losses=sslcore_register_losses)
    with pytest.raises(SslcoreError, match=r"^the plugin explains itself; do this$"):
        PluginHost(autoload=False, extra_plugins=[("explaining", plugin)])


def test_one_module_under_two_names(make_plugin, no_builtins) -> None:
    module = make_plugin("twice")
    with pytest.raises(SslcoreError, match=r"^plugin 'again' is already registered as 'once'; register it once$"):
        PluginHost(autoload=False, extra_plugins=[("once", module), ("again", module)])
    with pytest.raises(SslcoreError, match=r"^plugin name 'same' is already taken by 'same'; rename one$"):
        PluginHost(autoload=False, extra_plugins=[("same", module), ("same", make_plugin("other"))])


def test_every_kind_has_a_registration_hook() -> None:
    hooks = [kind.hook for kind in BUILTIN_KINDS]
    assert sorted([*hooks, "sslcore_add_kinds", "sslcore_register_recipes"]) == HOOK_NAMES
    assert all(getattr(hookspecs, kind.hook) is kind.spec for kind in BUILTIN_KINDS)


# --- meta-tests ---------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Options:
    pass


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_is_exercised(hook: str, make_plugin, no_builtins, tmp_path: Path) -> None:
    """Each hook spec, implemented by a plugin, fills its registry with the plugin as provider."""
    recipe = tmp_path / "exercised.toml"
    recipe.write_text("")

    @hookimpl
    def implementation(registry):
        if hook == "sslcore_register_recipes":
            registry.add("exercised", recipe)
        else:
            registry.add("exercised", lambda config, **runtime: None, _Options)

    @hookspecs.hookspec
    def sslcore_register_exercises(registry):
        """Register exercises."""

    @hookimpl
    def add_kinds(kinds):
        kinds.add("exercised_kind", sslcore_register_exercises, table="exercised")

    implementations = {"sslcore_add_kinds": add_kinds} if hook == "sslcore_add_kinds" else {hook: implementation}
    host = PluginHost(autoload=False, extra_plugins=[("exerciser", make_plugin("exerciser", **implementations))])
    if hook == "sslcore_add_kinds":
        entry = host.kinds["exercised_kind"]
        assert entry.table == "exercised" and entry.description == "Register exercises."
        assert host.registries["exercised_kind"].kind == "exercised_kind"
    elif hook == "sslcore_register_recipes":
        entry = host.recipes.get("exercised")
        assert entry.path == recipe
    else:
        kind = {kind.hook: kind.name for kind in BUILTIN_KINDS}[hook]
        entry = host.registries[kind].get("exercised")
        assert [other.kind for other in host.registries if "exercised" in other] == [kind]
    assert entry.provider == Provider("exerciser")


def test_every_hook_is_documented() -> None:
    headings = re.findall(r"^#{2,4} `(sslcore_\w+)\((?:registry|kinds)\)`$", DOCS.read_text(), flags=re.MULTILINE)
    assert sorted(headings) == HOOK_NAMES


def test_every_hook_spec_has_a_docstring() -> None:
    for name in HOOK_NAMES:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name


def test_the_guide_shows_the_example_as_it_is() -> None:
    """The listings in docs/writing-a-plugin.md are the example package's files, verbatim."""
    listings = re.findall(r"^<!-- file: (\S+) -->\n```\w+\n(.*?)^```$", DOCS.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert [path for path, _ in listings] == [
        "docs/examples/sslcore-fifo-keystore/pyproject.toml",
        "docs/examples/sslcore-fifo-keystore/sslcore_fifo_keystore.py",
        "docs/examples/sslcore-example-kind/sslcore_example_kind/hookspecs.py",
        "docs/examples/sslcore-example-kind/sslcore_example_kind/noise.py",
        "docs/examples/sslcore-example-kind/sslcore_example_kind/gaussian.py",
    ]
    for path, text in listings:
        assert text == (DOCS.parents[1] / path).read_text(), path
