"""Every user mistake gives one line on stderr (``error: WHERE: WHAT; HINT``) and exit code 2.

A table of bad recipes, overrides, plugins and command lines, each with the exact message the user reads.
Most cases run the CLI in this process; a few run it in a new interpreter to prove no traceback escapes.
The built-in components are blocked, so the "known: ..." lists name only the toy plugin's components.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

from sslcore import hookimpl, hookspecs
from sslcore.engine.settings import RunSettings
from sslcore.errors import SslcoreError
from sslcore.plugins import BUILTIN_PLUGINS, PluginHost
from sslcore.recipe import SETTINGS_TABLES
from sslcore.registry import BUILTIN_KINDS

KINDS = ", ".join(sorted(kind.name for kind in BUILTIN_KINDS))
HOOKS = ", ".join(sorted(name for name in dir(hookspecs) if name.startswith("sslcore_")))
TABLES = ", ".join(sorted([*SETTINGS_TABLES, *(table for kind in BUILTIN_KINDS for table in kind.tables)]))
TOY_FIELDS = "depth, dims, dropout, name, norm, out_dim, pretrained, stem, width"
RUN_FIELDS = ", ".join(sorted(field.name for field in attrs.fields(RunSettings)))
BLOCK_HINT = "fix or uninstall it, or skip it with SSLCORE_BLOCK_PLUGINS"
BASE = """\
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


def edit(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


@hookimpl
def _misspelt(registry):
    """Registers nothing: its name is the mistake."""


def _unmarked(registry):
    """Named like a hook but not marked as one."""


@attrs.frozen(kw_only=True)
class _Copy:
    width: int = 1


@hookimpl
def _copy_backbone(registry):
    registry.add("toy", lambda config: None, _Copy)


@hookimpl
def _exploding(registry):
    raise RuntimeError("boom")


@hookimpl
def _not_attrs(registry):
    registry.add("plain", lambda config: None, dict)


@attrs.frozen(kw_only=True)
class _WithKind:
    kind: str = "a"


@hookimpl
def _kind_field(registry):
    registry.add("kindly", lambda config: None, _WithKind)


@hookimpl
def _extra_argument(registry, temperature):
    """Asks for an argument the hook does not pass."""


@attrs.frozen
class Case:
    id: str
    argv: tuple[str, ...]
    message: str
    recipe: str = BASE
    #: Extra plugins beside the toy plugin: ``(make_plugin, recipe_path) -> [(name, module)]``.
    plugins: Callable[[Callable[..., ModuleType], Path], list[tuple[str, Any]]] = lambda make, recipe: []


CHECK = ("check", "{recipe}")

CASES = [
    # --- recipe files -----------------------------------------------------------------------------------------
    Case(
        "malformed TOML",
        CHECK,
        "{recipe}: malformed TOML: Expected ']' at the end of a table declaration (at line 1, column 5); "
        "fix the syntax",
        recipe="[run\nbatch_size = 8\n",
    ),
    Case(
        "unknown table",
        CHECK,
        f"{{recipe}}: unknown table [optimiser]; did you mean 'optimizer'? (known: {TABLES})",
        recipe=BASE + '[optimiser]\nkind = "sgd"\n',
    ),
    Case(
        "missing required table",
        CHECK,
        "{recipe}: missing table [optimizer]; every recipe needs [optimizer]",
        recipe=BASE.split("[optimizer]")[0],
    ),
    Case(
        "unknown key with a close name",
        CHECK,
        f"{{recipe}} [backbone.widht]: unknown key 'widht'; did you mean 'width'? (known: {TOY_FIELDS})",
        recipe=edit("width = 8", "widht = 8"),
    ),
    Case(
        "unknown key in a nested table",
        CHECK,
        "{recipe} [backbone.stem.chanels]: unknown key 'chanels'; did you mean 'channels'? (known: channels, scale)",
        recipe=edit("width = 8", "stem = { chanels = 3 }"),
    ),
    Case(
        "float for an int",
        CHECK,
        "{recipe} [backbone.width]: expected an integer, got 8.5 (float)",
        recipe=edit("width = 8", "width = 8.5"),
    ),
    Case(
        "bool for an int",
        CHECK,
        "{recipe} [backbone.depth]: expected an integer, got True (boolean)",
        recipe=edit("width = 8", "depth = true"),
    ),
    Case(
        "string for a bool",
        CHECK,
        "{recipe} [backbone.pretrained]: expected a boolean (true/false), got 'false' (string)",
        recipe=edit("width = 8", 'pretrained = "false"'),
    ),
    Case(
        "int for a string",
        CHECK,
        "{recipe} [backbone.name]: expected a string, got 3 (integer)",
        recipe=edit("width = 8", "name = 3"),
    ),
    Case(
        "string for an array",
        CHECK,
        "{recipe} [backbone.dims]: expected an array, got '4,8' (string)",
        recipe=edit("width = 8", 'dims = "4,8"'),
    ),
    Case(
        "wrong item type in an array",
        CHECK,
        "{recipe} [backbone.dims[1]]: expected an integer, got 'x' (string)",
        recipe=edit("width = 8", 'dims = [4, "x"]'),
    ),
    Case(
        "scalar for a nested table",
        CHECK,
        "{recipe} [backbone.stem]: expected a table, got 3 (integer)",
        recipe=edit("width = 8", "stem = 3"),
    ),
    Case(
        "out of range",
        CHECK,
        "{recipe} [backbone.width]: must be > 0: 0",
        recipe=edit("width = 8", "width = 0"),
    ),
    Case(
        "cross-field rule",
        CHECK,
        "{recipe} [backbone]: depth must not exceed width, got depth=3 and width=1",
        recipe=edit("width = 8", "width = 1\ndepth = 3"),
    ),
    Case(
        "literal not among the allowed values, close to one",
        CHECK,
        "{recipe} [backbone.norm]: expected one of 'batch', 'layer', 'none', got 'bacth' (string); "
        "did you mean 'batch'?",
        recipe=edit("width = 8", 'norm = "bacth"'),
    ),
    Case(
        "literal not among the allowed values, in an engine table",
        CHECK,
        "{recipe} [run.mixed_precision]: expected one of 'no', 'bf16', 'fp16', got 'fp32' (string)",
        recipe=edit("steps = 2", 'steps = 2\nmixed_precision = "fp32"'),
    ),
    Case(
        "missing required key",
        CHECK,
        "{recipe} [run.batch_size]: missing required key",
        recipe=edit("batch_size = 8\n", ""),
    ),
    Case(
        "unknown key close to a missing required key",
        CHECK,
        f"{{recipe}} [run.batchsize]: unknown key 'batchsize'; did you mean 'batch_size'? (known: {RUN_FIELDS})",
        recipe=edit("batch_size = 8", "batchsize = 8"),
    ),
    Case(
        "engine cross-field rule",
        CHECK,
        "{recipe} [run]: give epochs or steps (or both: steps caps the run)",
        recipe=edit("steps = 2\n", ""),
    ),
    Case(
        "unknown kind",
        CHECK,
        "{recipe} [backbone.kind]: unknown backbone 'toyy'; did you mean 'toy'? (known: toy)",
        recipe=edit('[backbone]\nkind = "toy"', '[backbone]\nkind = "toyy"'),
    ),
    Case(
        "unknown method names the plugin to install",
        CHECK,
        "{recipe} [method.kind]: unknown method 'swav'; known: toy; install the plugin that provides it "
        "(e.g. `pip install sslcore-plugin-swav`), then check `sslcore list method`",
        recipe=edit('[method]\nkind = "toy"', '[method]\nkind = "swav"'),
    ),
    Case(
        "missing kind",
        CHECK,
        "{recipe} [backbone]: missing 'kind'; name a backbone: `sslcore list backbone` shows them",
        recipe=edit('[backbone]\nkind = "toy"\n', "[backbone]\n"),
    ),
    Case(
        "kind is not a string",
        CHECK,
        "{recipe} [backbone.kind]: 'kind' must be a string, got 3",
        recipe=edit('[backbone]\nkind = "toy"', "[backbone]\nkind = 3"),
    ),
    Case(
        "component table given as a value",
        CHECK,
        "{recipe} [key_store]: expected a table with a 'kind', got 'toy_queue'",
        recipe='key_store = "toy_queue"\n' + BASE,
    ),
    Case(
        "missing backbone",
        CHECK,
        "{recipe}: missing table [backbone]; every recipe needs [backbone] or [backbones.<name>]",
        recipe=edit('[backbone]\nkind = "toy"\nwidth = 8\n', ""),
    ),
    Case(
        "named and unnamed tables of one kind",
        CHECK,
        "{recipe}: [backbone] and [backbones.l] both give a backbone; a recipe has one [backbone] or named "
        "[backbones.<name>] tables: rename [backbone]",
        recipe=BASE + '[backbones.l]\nkind = "toy"\n',
    ),
    Case(
        "one component written as named tables",
        CHECK,
        "{recipe} [backbones]: expected named tables such as [backbones.<name>]; for one backbone, write [backbone]",
        recipe=edit("[backbone]", "[backbones]"),
    ),
    Case(
        "unknown kind in a named table",
        CHECK,
        "{recipe} [backbones.l.kind]: unknown backbone 'toyy'; did you mean 'toy'? (known: toy)",
        recipe=edit('[backbone]\nkind = "toy"', '[backbones.l]\nkind = "toyy"'),
    ),
    # --- overrides --------------------------------------------------------------------------------------------
    Case(
        "override of a missing table",
        (*CHECK, "key_store.size=4"),
        "{recipe}: override 'key_store.size=4' names table [key_store], which the recipe does not have; "
        "add [key_store] to the recipe, or check the spelling",
    ),
    Case(
        "override of a missing nested table",
        (*CHECK, "heads.projector.size=4"),
        "{recipe}: override 'heads.projector.size=4' names table [heads], which the recipe does not have; "
        "add [heads] to the recipe, or check the spelling",
    ),
    Case(
        "malformed override",
        (*CHECK, "run.steps"),
        "override 'run.steps' is not of the form table.key=value; e.g. run.steps=100 or backbone.name=resnet18",
    ),
    Case(
        "override with an empty key",
        (*CHECK, "run..steps=3"),
        "override 'run..steps=3' is not of the form table.key=value; e.g. run.steps=100 or backbone.name=resnet18",
    ),
    Case(
        "override of the wrong type",
        (*CHECK, "run.steps=2.5"),
        "{recipe} [run.steps]: expected an integer, got 2.5 (float)",
    ),
    Case(
        "override with a misspelt key",
        (*CHECK, "backbone.deph=2"),
        f"{{recipe}} [backbone.deph]: unknown key 'deph'; did you mean 'depth'? (known: {TOY_FIELDS})",
    ),
    # --- recipe names -----------------------------------------------------------------------------------------
    Case(
        "unknown recipe name",
        ("check", "toy_bsae"),
        "recipe 'toy_bsae' is neither a file nor a known recipe name; did you mean 'toy_base'? "
        "(known: toy_base); `sslcore recipes` lists them",
        plugins=lambda make, recipe: [
            ("toy_recipes", make("toy_recipes", sslcore_register_recipes=hookimpl(lambda registry: registry.add("toy_base", recipe))))
        ],
    ),
    Case(
        "missing recipe file",
        ("check", "recipes/missing.toml"),
        "recipe 'recipes/missing.toml' is neither a file nor a known recipe name; known: none; "
        "`sslcore recipes` lists them",
    ),
    # --- plugins ----------------------------------------------------------------------------------------------
    Case(
        "duplicate registration names both providers",
        ("list",),
        "backbone 'toy' is registered twice: by toy and by copycat; uninstall or block one of them "
        "(SSLCORE_BLOCK_PLUGINS), or register with replace=True",
        plugins=lambda make, recipe: [("copycat", make("copycat", sslcore_register_backbones=_copy_backbone))],
    ),
    Case(
        "misspelt hook",
        ("list",),
        "plugin 'typo' implements unknown hook 'sslcore_register_keystores'; "
        f"did you mean 'sslcore_register_key_stores'? (known: {HOOKS})",
        plugins=lambda make, recipe: [("typo", make("typo", sslcore_register_keystores=_misspelt))],
    ),
    Case(
        "hook-named function without @hookimpl",
        ("list",),
        "plugin 'unmarked' is invalid: function sslcore_register_losses is not marked with @sslcore.hookimpl; "
        "fix the plugin",
        plugins=lambda make, recipe: [("unmarked", make("unmarked", sslcore_register_losses=_unmarked))],
    ),
    Case(
        "hook implementation asking for an argument the hook lacks",
        ("list",),
        "plugin 'greedy' is invalid: Plugin 'greedy' for hook 'sslcore_register_losses'; "
        "hookimpl definition: _extra_argument(registry, temperature); Argument(s) {'temperature'} are declared "
        "in the hookimpl but can not be found in the hookspec; fix the plugin",
        plugins=lambda make, recipe: [("greedy", make("greedy", sslcore_register_losses=_extra_argument))],
    ),
    Case(
        "plugin failing inside its hook",
        ("list",),
        f"plugin 'exploding' failed in sslcore_register_losses: RuntimeError: boom; {BLOCK_HINT}=exploding",
        plugins=lambda make, recipe: [("exploding", make("exploding", sslcore_register_losses=_exploding))],
    ),
    Case(
        "config that is not an attrs class",
        ("list",),
        "loss 'plain' from plugin plain has config <class 'dict'>, which is not an attrs class; "
        "declare its options with @attrs.frozen(kw_only=True)",
        plugins=lambda make, recipe: [("plain", make("plain", sslcore_register_losses=_not_attrs))],
    ),
    Case(
        "config with a field named kind",
        ("list",),
        "loss 'kindly' from plugin kindly has a config field named 'kind', which recipes use to name the "
        "component; rename the field",
        plugins=lambda make, recipe: [("kindly", make("kindly", sslcore_register_losses=_kind_field))],
    ),
    # --- command line -----------------------------------------------------------------------------------------
    Case(
        "unknown component kind in sslcore list",
        ("list", "key_stores"),
        f"unknown component kind 'key_stores'; did you mean 'key_store'? (known: {KINDS})",
    ),
    Case(
        "unknown command",
        ("chek",),
        "sslcore: argument command: invalid choice: 'chek' (choose from 'launch', 'run', 'check', 'list', 'plugins', "
        "'recipes', 'embed', 'eval', 'export'); see `sslcore --help`",
    ),
    Case(
        "missing argument",
        ("check",),
        "no recipe given; name a recipe (`sslcore recipes` lists them) or use --data DIR",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
@pytest.mark.usefixtures("no_builtins")
def test_one_line_message_and_exit_code_2(case: Case, cli, write_recipe, toy_plugin, make_plugin) -> None:
    recipe = write_recipe(case.recipe)
    plugins = [("toy", toy_plugin), *case.plugins(make_plugin, recipe)]
    result = cli([arg.replace("{recipe}", str(recipe)) for arg in case.argv], plugins=plugins)
    assert result.err == "error: " + case.message.replace("{recipe}", str(recipe)) + "\n"
    assert result.code == 2
    assert result.out == ""


def test_at_least_fifteen_cases() -> None:
    assert len(CASES) >= 15 and len({case.id for case in CASES}) == len(CASES)


# --- with the built-in components: a component's rule against [run], data files -------------------------------

QUEUE_HINT = ("set size to at least 8 (twice that for a method that enqueues two views per step, e.g. symmetric MoCo), "
              "or lower [run] batch_size")


@pytest.mark.parametrize("table", ["key_store", "key_stores.negatives"])
@pytest.mark.parametrize("command", ["check", "run"])
def test_a_queue_smaller_than_the_global_batch_is_rejected_with_the_recipe(command, table, cli, write_recipe,
                                                                            toy_plugin, tmp_path) -> None:
    recipe = write_recipe(BASE + f'\n[{table}]\nkind = "queue"\nsize = 4\n')
    result = cli([command, recipe, f"run.output_dir={tmp_path / 'runs'}"], plugins=[("toy", toy_plugin)])
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        f"error: {recipe} [{table}]: size = 4 cannot hold one global batch of keys ([run] batch_size = 8), which "
        f"every step enqueues; {QUEUE_HINT}\n"
    )
    assert not (tmp_path / "runs").exists()  # rejected before anything is built or written


def test_a_broken_data_file_stops_a_run_with_one_line(cli, write_recipe, toy_plugin, tmp_path) -> None:
    empty = tmp_path / "train.parquet"
    empty.write_bytes(b"")
    recipe = write_recipe(edit('[data]\nkind = "toy"', f'[data]\nkind = "parquet"\ntrain = "{empty}"'))
    result = cli(["run", recipe, f"run.output_dir={tmp_path / 'runs'}"], plugins=[("toy", toy_plugin)])
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        f"error: {recipe} [data]: train file '{empty}' is empty (0 bytes); replace it with a complete Parquet file, "
        "or leave it out of train\n"
    )


# --- plugins installed as distributions: errors name the distribution ------------------------------------------

BROKEN = "import does_not_exist\n"
TYPO = """\
import sslcore

@sslcore.hookimpl
def sslcore_register_keystores(registry):
    pass
"""
UNMARKED = """\
def sslcore_register_losses(registry):
    pass
"""


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            BROKEN,
            "plugin 'bad' (distribution fake-bad 1.0) failed to import: ModuleNotFoundError: "
            f"No module named 'does_not_exist'; {BLOCK_HINT}=bad",
        ),
        (
            TYPO,
            "plugin 'bad' (distribution fake-bad 1.0) implements unknown hook 'sslcore_register_keystores'; "
            f"did you mean 'sslcore_register_key_stores'? (known: {HOOKS})",
        ),
        (
            UNMARKED,
            "plugin 'bad' (distribution fake-bad 1.0) is invalid: function sslcore_register_losses is not marked "
            "with @sslcore.hookimpl; fix the plugin",
        ),
    ],
    ids=["fails to import", "misspelt hook", "unmarked hook"],
)
def test_installed_plugin_errors_name_the_distribution(source, message, fake_site, cli, no_builtins) -> None:
    fake_site.install("fake-bad", "1.0", {"bad": "fake_bad_plugin"}, {"fake_bad_plugin": source})
    result = cli(["list"])
    assert (result.code, result.err) == (2, f"error: {message}\n")


def test_two_distributions_with_one_plugin_name(fake_site, cli, no_builtins) -> None:
    fake_site.install("fake-one", "1.0", {"same": "fake_one"}, {"fake_one": ""})
    fake_site.install("fake-two", "2.0", {"same": "fake_two"}, {"fake_two": ""})
    result = cli(["list"])
    assert result.code == 2
    assert result.err == (
        "error: distributions fake-one 1.0 and fake-two 2.0 both use the plugin name 'same'; uninstall one, or keep "
        "one by blocking the other: SSLCORE_BLOCK_PLUGINS=fake-one:same or SSLCORE_BLOCK_PLUGINS=fake-two:same\n"
    )
    listing = cli(["plugins"])  # still works, and lists both
    assert listing.code == 0, listing.err
    note = "not loaded: 2 distributions use the name 'same'; keep one with SSLCORE_BLOCK_PLUGINS=DIST:same"
    assert f"same  (fake-one 1.0)  {note}" in listing.out and f"same  (fake-two 2.0)  {note}" in listing.out


def test_blocking_one_distribution_of_a_clash_keeps_the_other(fake_site, cli, no_builtins, monkeypatch) -> None:
    fake_site.install("fake-one", "1.0", {"same": "fake_one"}, {"fake_one": ""})
    fake_site.install("fake-two", "2.0", {"same": "fake_two"}, {"fake_two": ""})
    monkeypatch.setenv("SSLCORE_BLOCK_PLUGINS", ",".join([*BUILTIN_PLUGINS, "fake-two:same"]))
    result = cli(["plugins"])
    assert result.code == 0, result.err
    assert "same  (fake-one 1.0)  \n" in result.out and "same  (fake-two 2.0)  blocked" in result.out


def test_a_blocked_plugins_component_is_reported_as_blocked(fake_site, cli, write_recipe, toy_plugin,
                                                             no_builtins, monkeypatch) -> None:
    fake_site.install("sslcore-plugin-swav", "0.3", {"swav": "fake_swav"}, {"fake_swav": BROKEN})
    monkeypatch.setenv("SSLCORE_BLOCK_PLUGINS", "swav," + ",".join(BUILTIN_PLUGINS))
    recipe = write_recipe(edit('[method]\nkind = "toy"', '[method]\nkind = "swav"'))
    monkeypatch.setattr("sslcore.cli.PluginHost", functools.partial(PluginHost, extra_plugins=[("toy", toy_plugin)]))
    result = cli(["check", recipe])
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        f"error: {recipe} [method.kind]: unknown method 'swav'; plugin 'swav' (distribution sslcore-plugin-swav 0.3), "
        "which SSLCORE_BLOCK_PLUGINS blocks, may provide it: unblock to use it (known: toy); install the plugin that "
        "provides it (e.g. `pip install sslcore-plugin-swav`), then check `sslcore list method`\n"
    )


def test_debug_keeps_the_plugins_own_exception_as_the_cause(fake_site, toy_plugin, make_plugin, no_builtins) -> None:
    fake_site.install("fake-bad", "1.0", {"bad": "fake_bad_plugin"}, {"fake_bad_plugin": BROKEN})
    with pytest.raises(SslcoreError, match="failed to import") as raised:
        PluginHost()
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)
    with pytest.raises(SslcoreError, match="failed in sslcore_register_losses") as raised:
        PluginHost(autoload=False, extra_plugins=[("exploding", make_plugin("exploding",
                                                                             sslcore_register_losses=_exploding))])
    assert isinstance(raised.value.__cause__, RuntimeError) and str(raised.value.__cause__) == "boom"


# --- in a new interpreter: no traceback reaches the user, unless SSLCORE_DEBUG=1 asks for it ----------------------


def test_subprocess_broken_plugin_is_one_line(fake_site, cli_subprocess) -> None:
    fake_site.install("fake-bad", "1.0", {"bad": "fake_bad_plugin"}, {"fake_bad_plugin": BROKEN})
    result = cli_subprocess(["list"], pythonpath=[fake_site.path])
    assert result.code == 2
    assert result.err == (
        "error: plugin 'bad' (distribution fake-bad 1.0) failed to import: ModuleNotFoundError: "
        f"No module named 'does_not_exist'; {BLOCK_HINT}=bad\n"
    )
    assert result.out == ""
    debug = cli_subprocess(["list"], pythonpath=[fake_site.path], SSLCORE_DEBUG="1")
    assert debug.code == 1 and "fake_bad_plugin.py" in debug.err and "import does_not_exist" in debug.err
    assert "The above exception was the direct cause" in debug.err


def test_subprocess_bad_recipe_is_one_line(write_recipe, cli_subprocess) -> None:
    recipe = write_recipe("[run\n")
    result = cli_subprocess(["check", recipe, "run.steps=3"], SSLCORE_DISABLE_PLUGIN_AUTOLOAD="1")
    assert result.code == 2
    assert result.err == (
        f"error: {recipe}: malformed TOML: Expected ']' at the end of a table declaration (at line 1, column 5); "
        "fix the syntax\n"
    )
    assert result.out == ""


def test_subprocess_debug_shows_the_traceback(write_recipe, cli_subprocess) -> None:
    recipe = write_recipe("[run\n")
    result = cli_subprocess(["check", recipe], SSLCORE_DEBUG="1", SSLCORE_DISABLE_PLUGIN_AUTOLOAD="1")
    assert result.code == 1
    assert "Traceback (most recent call last)" in result.err
    assert "sslcore.errors.SslcoreError:" in result.err and "malformed TOML" in result.err


def test_debug_reraises_in_process(monkeypatch, write_recipe, cli) -> None:
    monkeypatch.setenv("SSLCORE_DEBUG", "1")
    with pytest.raises(SslcoreError, match="malformed TOML"):
        cli(["check", write_recipe("[run\n")], plugins=[])
