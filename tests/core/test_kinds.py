"""Open kinds and named components: a plugin adds a component kind; a recipe names several components of a kind.

In-process, with a fresh host per test. The installed-package acceptance test is test_example_kind.py.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from sslcore import hookimpl, hookspecs
from sslcore.errors import SslcoreError
from sslcore.export import ConcatFeatures, export_run, save_networks
from sslcore.method import MethodParts
from sslcore.plugins import PluginHost
from sslcore.recipe import SETTINGS_TABLES, resolve
from sslcore.registry import BUILTIN_KINDS, ENGINE_TABLES, Provider

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


# The kind a test plugin adds. Its spec would live in the plugin's own module of hook specs.
@hookspecs.hookspec
def sslcore_register_samplers(registry):
    """Register samplers: ``factory(config, dim, total_steps)``."""


@hookspecs.hookspec
def sslcore_register_others(registry):
    """Register others."""


@hookimpl
def _add_sampler(kinds):
    kinds.add("sampler", sslcore_register_samplers, table="sampler", named="samplers", runtime=("dim", "total_steps"))


def _kind_plugin(make_plugin, **hooks) -> ModuleType:
    """The plugin ``adder``: adds the kind ``sampler``, and implements ``hooks``."""
    return make_plugin("adder", sslcore_add_kinds=_add_sampler, **hooks)


def _register_replay(toy_plugin):
    @hookimpl
    def register(registry):
        registry.add("replay", toy_plugin.build_toy, toy_plugin.ToySizeConfig)

    return register


def test_a_plugin_adds_a_kind(make_plugin, toy_plugin, write_recipe) -> None:
    user = make_plugin("user", sslcore_register_samplers=_register_replay(toy_plugin))  # before the kind exists
    plugins = [("user", user), ("toy", toy_plugin), ("adder", _kind_plugin(make_plugin))]
    host = PluginHost(autoload=False, extra_plugins=plugins)
    kind = host.kinds["sampler"]
    assert (kind.hook, kind.tables, kind.runtime) == ("sslcore_register_samplers", ("sampler", "samplers"),
                                                      ("dim", "total_steps"))
    assert kind.provider == Provider("adder")
    assert kind.description == "Register samplers: ``factory(config, dim, total_steps)``."
    assert [k.name for k in host.kinds][: len(BUILTIN_KINDS)] == [k.name for k in BUILTIN_KINDS]
    assert host.registries["sampler"].get("replay").provider == Provider("user")
    assert "sslcore_register_samplers" in host.hook_names()
    assert "sslcore_register_samplers" in {info.name: info for info in host.plugins()}["user"].hooks

    named = '[samplers.a]\nkind = "replay"\n[samplers.b]\nkind = "replay"\nsize = 2\n'
    parts = MethodParts(resolve(str(write_recipe(BASE_RECIPE + named)), host), num_samples=10, total_steps=7,
                        steps_per_epoch=1)
    built = parts.component("sampler", "b", dim=3)  # total_steps, a run fact, is filled in
    assert (built.config.size, built.runtime) == (2, {"dim": 3, "total_steps": 7})
    parts.component("backbone")
    with pytest.raises(SslcoreError, match=r"does not use table \[samplers.a\]"):
        parts.check_all_used()
    single = resolve(str(write_recipe(BASE_RECIPE + '[sampler]\nkind = "replay"\n')), host)
    parts = MethodParts(single, num_samples=1, total_steps=1, steps_per_epoch=1)
    assert parts.component("sampler", dim=1).config.size == 16


def test_sslcore_list_shows_a_plugin_kind_with_its_provider(cli, make_plugin, toy_plugin) -> None:
    adder = _kind_plugin(make_plugin, sslcore_register_samplers=_register_replay(toy_plugin))
    plugins = [("toy", toy_plugin), ("adder", adder)]
    result = cli(["list", "sampler"], plugins=plugins)
    assert result.out.splitlines() == [
        "sampler:  adder  [sampler], [samplers.<name>]  Register samplers: ``factory(config, dim, total_steps)``.",
        "  replay                  adder  A toy component that remembers how it was built.",
    ]
    assert "sampler:  adder" in cli(["list"], plugins=plugins).out
    assert cli(["list", "backbone"], plugins=plugins).out.splitlines()[0] == "backbone:"


def test_without_the_plugin_that_adds_it_a_kind_is_unknown(cli, make_plugin, toy_plugin, write_recipe) -> None:
    user = make_plugin("user", sslcore_register_samplers=_register_replay(toy_plugin))
    result = cli(["list"], plugins=[("toy", toy_plugin), ("user", user)])
    assert result.err.startswith("error: plugin 'user' implements unknown hook 'sslcore_register_samplers'; ")
    recipe = write_recipe(BASE_RECIPE + '[sampler]\nkind = "replay"\n')
    result = cli(["check", recipe], plugins=[("toy", toy_plugin)])
    assert result.err.startswith(f"error: {recipe}: unknown table [sampler]; ")


OTHER = {"name": "other", "spec": sslcore_register_others}
WRONG_KINDS = [
    (
        {"table": "sampler"},
        "component kind 'sampler' is added twice: by adder and by again; uninstall or block one of them "
        "(SSLCORE_BLOCK_PLUGINS)",
    ),
    (
        {**OTHER, "table": "backbone"},
        "component kind 'other' from again uses recipe table [backbone], which kind 'backbone' from sslcore",
    ),
    (
        {**OTHER, "named": "run"},
        "component kind 'other' from again uses recipe table [run], which the engine uses; choose another table name",
    ),
    (
        {"name": "other", "table": "o"},
        "component kinds 'sampler' (adder) and 'other' (again) share the registration hook sslcore_register_samplers; "
        "give each kind its own hook",
    ),
    (
        {**OTHER, "spec": lambda registry: None, "table": "o"},
        "a kind's registration hook must be a function named sslcore_register_<kinds> and marked with "
        "@sslcore.hookspecs.hookspec",
    ),
    (
        {**OTHER, "spec": hookspecs.sslcore_register_recipes, "table": "o"},
        "component kind 'other' from again declares hook sslcore_register_recipes, which exists; name the registration "
        "hook after the kind",
    ),
    ({**OTHER}, "component kind 'other' has no recipe table; give table= or named="),
    ({**OTHER, "name": "Other", "table": "o"}, "a kind's name must be a lower-case identifier, got 'Other'"),
]


@pytest.mark.parametrize(("arguments", "message"), WRONG_KINDS)
def test_adding_a_kind_wrong_is_one_line(arguments, message, make_plugin) -> None:
    arguments = {"name": "sampler", "spec": sslcore_register_samplers, **arguments}

    @hookimpl
    def again(kinds):
        kinds.add(arguments.pop("name"), arguments.pop("spec"), **arguments)

    plugins = [("adder", _kind_plugin(make_plugin)), ("again", make_plugin("again", sslcore_add_kinds=again))]
    with pytest.raises(SslcoreError) as error:
        PluginHost(autoload=False, extra_plugins=plugins)
    assert str(error.value).startswith(message)


def test_an_implementation_is_checked_against_the_added_spec(make_plugin) -> None:
    @hookimpl
    def greedy(registry, extra):
        pass

    greedy_plugin = make_plugin("greedy", sslcore_register_samplers=greedy)
    plugins = [("greedy", greedy_plugin), ("adder", _kind_plugin(make_plugin))]
    # pluggy checks implementations registered before the spec was added when the spec is added
    with pytest.raises(SslcoreError, match=r"^plugin 'greedy' is invalid: .*Argument\(s\) \{'extra'\} are declared"):
        PluginHost(autoload=False, extra_plugins=plugins)


# --- named components -------------------------------------------------------------------------------------------

NAMED = BASE_RECIPE.replace('[backbone]\nkind = "toy"\nwidth = 8\n', """\
[backbones.l]
kind = "toy"
width = 4

[backbones.ab]
kind = "toy"

[key_stores.support]
kind = "toy_queue"
size = 32

[target_updaters.slow]
kind = "toy_ema"

[losses.swap]
kind = "toy_loss"
""")


def test_named_components(toy_host: PluginHost, toy_plugin, write_recipe, tmp_path: Path) -> None:
    recipe = resolve(str(write_recipe(NAMED)), toy_host, ["backbones.ab.width=6"])
    named = {"backbones.l", "backbones.ab", "key_stores.support", "target_updaters.slow", "losses.swap"}
    assert named <= set(recipe.components)
    parts = MethodParts(recipe, num_samples=50, total_steps=40, steps_per_epoch=10)
    assert (parts.backbone("l").config.width, parts.backbone("ab").config.width) == (4, 6)
    assert parts.key_store(8, "support").runtime == {"dim": 8, "num_samples": 50}
    assert parts.target_updater("slow").runtime == {"total_steps": 40}
    assert parts.has("losses.swap") and not parts.has("loss")
    with pytest.raises(SslcoreError, match=r"does not use table \[losses.swap\]; remove it"):
        parts.check_all_used()
    parts.loss("swap")
    parts.check_all_used()
    with pytest.raises(SslcoreError) as error:
        parts.backbone()
    assert str(error.value) == f"{recipe.source}: method 'toy' needs a [backbone] table; add [backbone] with a kind"
    with pytest.raises(SslcoreError, match=r"needs a \[key_stores.queue\] table"):
        parts.key_store(8, name="queue")
    backbones = tomllib.loads(recipe.to_toml())["backbones"]
    assert (list(backbones), backbones["l"]["width"], backbones["ab"]["width"]) == (["l", "ab"], 4, 6)
    assert resolve(str(write_recipe(recipe.to_toml(), "again.toml")), toy_host).to_dict() == recipe.to_dict()


def test_parts_component_is_called_as_its_kind_says(toy_host: PluginHost, write_recipe) -> None:
    parts = MethodParts(resolve(str(write_recipe(NAMED)), toy_host), num_samples=1, total_steps=1, steps_per_epoch=1)
    with pytest.raises(SslcoreError, match=r"^head tables are named: \[heads.<name>\], got name=None$"):
        parts.component("head", in_dim=3)
    with pytest.raises(SslcoreError, match=r"^method tables are unnamed: \[method\], got name='x'$"):
        parts.component("method", "x")
    with pytest.raises(SslcoreError, match=r"^a key_store is built with runtime arguments \(dim, num_samples\), got "
                                           r"\(num_samples\); pass those not among the run facts"):
        parts.component("key_store", "support")
    with pytest.raises(SslcoreError, match=r"^unknown component kind 'sampler'"):
        parts.component("sampler")


# --- several exported networks -----------------------------------------------------------------------------------


def test_save_and_export_several_networks(tmp_path: Path) -> None:
    networks = {"l": nn.Linear(3, 2), "ab": nn.Linear(3, 4)}
    single, several = tmp_path / "single", tmp_path / "several"
    single.mkdir(), several.mkdir()
    assert save_networks({"backbone": networks["l"]}, single) == [single / "backbone.safetensors"]
    assert save_networks(networks, several) == [several / "backbone_l.safetensors", several / "backbone_ab.safetensors"]
    written = export_run(str(several), str(tmp_path / "out" / "cmc.safetensors"))
    assert [path.name for path in written] == ["cmc_ab.safetensors", "cmc_l.safetensors"]
    assert load_file(str(tmp_path / "out" / "cmc_ab.safetensors"))["weight"].shape == (4, 3)
    assert export_run(str(single), str(tmp_path / "one.safetensors")) == [tmp_path / "one.safetensors"]


def test_concat_features() -> None:
    first, second = nn.Linear(3, 2), nn.Linear(3, 4)
    first.num_features, second.num_features = 2, 4
    both = ConcatFeatures({"first": first, "second": second})
    images = torch.randn(5, 3)
    assert both.num_features == 6 and torch.equal(both(images), torch.cat([first(images), second(images)], dim=1))


def test_the_kinds_table_is_documented() -> None:
    """docs/architecture.md has one row per built-in kind, as BUILTIN_KINDS says it."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    section = docs.split("\n### Component kinds\n", 1)[1].split("\n\n**", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines() if line[:2] == "| "]
    expected = [
        [kind.name, f"`{kind.hook}`",
         ", ".join(f"`[{t}]`" if t == kind.table else f"`[{t}.<name>]`" for t in kind.tables),
         ", ".join(f"`{argument}`" for argument in kind.runtime)]
        for kind in BUILTIN_KINDS
    ]  # fmt: skip
    assert rows[2:] == expected


def test_no_kind_takes_an_engine_table() -> None:
    assert set(ENGINE_TABLES) == set(SETTINGS_TABLES)
