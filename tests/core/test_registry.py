"""Registries: look-up with did-you-mean, provenance, duplicates as errors, explicit replacement, order."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import attrs
import pytest

from sslcore import hookimpl
from sslcore.errors import SslcoreError
from sslcore.plugins import BUILTIN_PLUGINS, PluginHost
from sslcore.recipes_registry import RecipeRegistry
from sslcore.registry import BUILTIN_KINDS, Provider, Registries, Registry


@attrs.frozen(kw_only=True)
class Options:
    size: int = 1


def documented(config, **runtime):
    """First line describes it.

    The rest does not show in `sslcore list`.
    """
    return config, runtime


def undocumented(config):
    return config


def blank(config):
    """   """


def test_add_get_and_listing() -> None:
    registry = Registry("loss")
    registry.provider = Provider("mine", "1.2")
    entry = registry.add("zeta", documented, Options)
    registry.add("alpha", undocumented, Options, description="given")
    registry.add("mid", blank, Options)
    assert registry.get("zeta") is entry
    assert (entry.kind, entry.name, entry.config, entry.provider) == ("loss", "zeta", Options, Provider("mine", "1.2"))
    assert entry.description == "First line describes it."
    assert [e.description for e in registry] == ["given", "", "First line describes it."]
    assert registry.names() == ["alpha", "mid", "zeta"] and [e.name for e in registry] == registry.names()
    assert len(registry) == 3 and "mid" in registry and "nope" not in registry
    assert entry.build(Options(size=3), dim=4) == (Options(size=3), {"dim": 4})


def test_unknown_name_suggests_the_closest() -> None:
    registry = Registry("head")
    for name in ("mlp", "prototypes", "dino"):
        registry.add(name, undocumented, Options)
    with pytest.raises(SslcoreError) as error:
        registry.get("mpl", where="r.toml [heads.projector.kind]")
    assert str(error.value) == "r.toml [heads.projector.kind]: unknown head 'mpl'; did you mean 'mlp'? (known: dino, mlp, prototypes)"
    with pytest.raises(SslcoreError, match=r"^unknown head 'zzz'; known: dino, mlp, prototypes$"):
        registry.get("zzz")


def test_provider_text() -> None:
    assert str(Provider("sslcore-plugin-moco", "0.3.1")) == "sslcore-plugin-moco 0.3.1"
    assert str(Provider("local")) == "local"


def test_duplicate_is_an_error_naming_both_providers() -> None:
    registry = Registry("key_store")
    registry.provider = Provider("first-dist", "1.0")
    registry.add("fifo", undocumented, Options)
    registry.provider = Provider("second-dist", "2.0")
    with pytest.raises(SslcoreError) as error:
        registry.add("fifo", documented, Options)
    assert str(error.value) == (
        "key_store 'fifo' is registered twice: by first-dist 1.0 and by second-dist 2.0; uninstall or block one "
        "of them (SSLCORE_BLOCK_PLUGINS), or register with replace=True"
    )
    assert registry.get("fifo").factory is undocumented  # nothing was overwritten


def test_explicit_replace_records_the_new_provider() -> None:
    registry = Registry("key_store")
    registry.provider = Provider("first")
    registry.add("fifo", undocumented, Options)
    registry.provider = Provider("second")
    registry.add("fifo", documented, Options, replace=True)
    entry = registry.get("fifo")
    assert (entry.factory, entry.provider, len(registry)) == (documented, Provider("second"), 1)


def test_registries_one_per_kind() -> None:
    registries = Registries()
    assert [registry.kind for registry in registries] == [kind.name for kind in BUILTIN_KINDS]
    assert registries["loss"] is registries["loss"] and registries["loss"] is not registries["head"]
    with pytest.raises(SslcoreError, match=r"^unknown component kind 'losses'; did you mean 'loss'\?"):
        registries["losses"]


# --- provenance through the plugin host -----------------------------------------------------------------------


def test_builtins_are_provided_by_sslcore() -> None:
    host = PluginHost(autoload=False)
    entries = [entry for registry in host.registries for entry in registry]
    assert entries, "the built-in plugins register components"
    assert {entry.provider for entry in entries} == {Provider("sslcore", importlib.metadata.version("sslcore"))}
    assert set(BUILTIN_PLUGINS) <= {info.name for info in host.plugins()}


def test_entries_record_their_plugin_and_distribution(fake_site, toy_plugin, no_builtins) -> None:
    fake_site.install(
        "sslcore-plugin-extra",
        "2.3.0",
        {"extra": "extra_plugin"},
        {
            "extra_plugin": """\
                import attrs
                import sslcore

                @attrs.frozen(kw_only=True)
                class Config:
                    scale: float = 1.0

                def build(config):
                    '''An extra loss.'''

                @sslcore.hookimpl
                def sslcore_register_losses(registry):
                    registry.add("extra", build, Config)
            """
        },
    )
    host = PluginHost(extra_plugins=[("toy", toy_plugin)])
    assert host.registries["loss"].get("extra").provider == Provider("sslcore-plugin-extra", "2.3.0")
    assert host.registries["loss"].get("extra").description == "An extra loss."
    assert host.registries["loss"].get("toy_loss").provider == Provider("toy")


def _registering(make_plugin, name: str, *, replace: bool = False, **marks: bool):
    @hookimpl(**marks)
    def sslcore_register_key_stores(registry):
        registry.add("store", lambda config: name, Options, replace=replace)

    return make_plugin(name, sslcore_register_key_stores=sslcore_register_key_stores)


def test_plugins_register_in_order_so_a_later_one_can_replace(make_plugin, no_builtins) -> None:
    host = PluginHost(
        autoload=False,
        extra_plugins=[("early", _registering(make_plugin, "early")), ("late", _registering(make_plugin, "late", replace=True))],
    )
    entry = host.registries["key_store"].get("store")
    assert entry.provider == Provider("late") and entry.build(Options()) == "late"


def test_installed_plugins_register_before_extra_plugins(fake_site, make_plugin, no_builtins) -> None:
    fake_site.install(
        "installed-store",
        "1.0",
        {"installed": "installed_store"},
        {
            "installed_store": """\
                import attrs
                import sslcore

                @attrs.frozen(kw_only=True)
                class Options:
                    pass

                @sslcore.hookimpl
                def sslcore_register_key_stores(registry):
                    registry.add("store", lambda config: "installed", Options)
            """
        },
    )
    host = PluginHost(extra_plugins=[("override", _registering(make_plugin, "override", replace=True))])
    assert host.registries["key_store"].get("store").provider == Provider("override")
    with pytest.raises(SslcoreError, match=r"registered twice: by installed-store 1.0 and by plain;"):
        PluginHost(extra_plugins=[("plain", _registering(make_plugin, "plain"))])


def test_tryfirst_and_trylast_move_a_plugin_to_either_end(make_plugin, no_builtins) -> None:
    plugins = [
        ("normal", _registering(make_plugin, "normal")),
        ("last", _registering(make_plugin, "last", trylast=True)),
        ("first", _registering(make_plugin, "first", tryfirst=True)),
    ]
    with pytest.raises(SslcoreError, match=r"registered twice: by first and by normal;"):
        PluginHost(autoload=False, extra_plugins=plugins)
    plugins[1] = ("last", _registering(make_plugin, "last", replace=True, trylast=True))
    plugins[0] = ("normal", _registering(make_plugin, "normal", replace=True))
    host = PluginHost(autoload=False, extra_plugins=plugins)
    assert host.registries["key_store"].get("store").provider == Provider("last")


def test_each_host_has_its_own_registries(make_plugin, no_builtins) -> None:
    with_store = PluginHost(autoload=False, extra_plugins=[("one", _registering(make_plugin, "one"))])
    without = PluginHost(autoload=False)
    assert "store" in with_store.registries["key_store"] and "store" not in without.registries["key_store"]


# --- recipe registry ------------------------------------------------------------------------------------------


def test_recipe_registry(tmp_path: Path) -> None:
    for name in ("b", "a"):
        (tmp_path / f"{name}.toml").write_text("")
    (tmp_path / "c.txt").write_text("")
    recipes = RecipeRegistry()
    recipes.provider = Provider("ship", "1.0")
    recipes.add_directory(tmp_path)
    recipes.add("a", tmp_path / "a.toml")  # the same file again is harmless
    assert recipes.names() == ["a", "b"]
    assert recipes.get("b").path == tmp_path / "b.toml" and recipes.get("b").provider == Provider("ship", "1.0")
    assert recipes.get("c") is None
    recipes.provider = Provider("other")
    with pytest.raises(SslcoreError, match=r"^recipe 'a' is registered twice: by ship 1.0 and by other;"):
        recipes.add("a", tmp_path / "b.toml")
