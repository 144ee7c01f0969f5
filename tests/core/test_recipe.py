"""Recipes: overrides, strict typing, recipes named by plugins, and the resolved recipe as a TOML round trip."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

import attrs
import pytest

from sslcore import hookimpl
from sslcore.engine.settings import OptimizerSettings, RunSettings, ScheduleSettings
from sslcore.errors import SslcoreError
from sslcore.method import MethodParts
from sslcore.plugins import PluginHost
from sslcore.recipe import apply_overrides, parse_override, resolve, write_resolved

FULL_RECIPE = """\
[run]
name = "say \\"hi\\" — ünïcode"
batch_size = 256
epochs = 3
steps = 40
trackers = ["tensorboard"]
grad_clip = 3.0
mixed_precision = "bf16"

[optimizer]
kind = "lars"
base_lr = 0.3
weight_decay = 1e-6
eps = 1e-8
betas = [0.9, 0.95]
fixed_lr_prefixes = ["predictor."]

[schedule]
warmup_epochs = 0.5
weight_decay_end = 0.4

[data]
kind = "toy"
size = 10

[views]
kind = "toy"

[backbone]
kind = "toy"
width = 16
dropout = 0
norm = "layer"
dims = [1, 2, 3]
stem = { channels = 1, scale = 0.25 }

[method]
kind = "toy"

[heads.projector]
kind = "toy_mlp"
size = 128

[heads.predictor]
kind = "toy_mlp"

[key_store]
kind = "toy_queue"
size = 4096

[target_updater]
kind = "toy_ema"

[loss]
kind = "toy_loss"
temperature = 0.2

[eval]
kind = "toy_knn"
size = 20
"""
#: The engine tables and the components every recipe needs.
SHORT_RECIPE = FULL_RECIPE.split("[heads.projector]")[0]


@pytest.mark.parametrize(
    ("text", "keys", "value"),
    [
        ("run.steps=100", ["run", "steps"], 100),
        ("run.seed=-5", ["run", "seed"], -5),
        ("optimizer.base_lr=0.5", ["optimizer", "base_lr"], 0.5),
        ("optimizer.weight_decay=1e-6", ["optimizer", "weight_decay"], 1e-6),
        ("run.progress=false", ["run", "progress"], False),
        ("run.deterministic=true", ["run", "deterministic"], True),
        ('run.trackers=["csv", "wandb"]', ["run", "trackers"], ["csv", "wandb"]),
        ("optimizer.betas=[0.9,0.99]", ["optimizer", "betas"], [0.9, 0.99]),
        ("backbone.name=resnet18", ["backbone", "name"], "resnet18"),
        ("run.output_dir=/tmp/runs", ["run", "output_dir"], "/tmp/runs"),
        ("run.name=my run", ["run", "name"], "my run"),
        ('run.name="true"', ["run", "name"], "true"),
        ("run.name='42'", ["run", "name"], "42"),
        (" heads.projector.size = 3 ", ["heads", "projector", "size"], 3),
        ("backbone.stem={ channels = 1 }", ["backbone", "stem"], {"channels": 1}),
        ("run.resume=", ["run", "resume"], ""),
    ],
)
def test_override_values_are_toml(text: str, keys: list[str], value: object) -> None:
    parsed_keys, parsed = parse_override(text)
    assert parsed_keys == keys
    assert parsed == value and type(parsed) is type(value)


def test_override_inf_is_a_float() -> None:
    assert math.isinf(parse_override("run.grad_clip=inf")[1])


def test_overrides_apply_in_order_and_reach_nested_tables() -> None:
    document = {"run": {"steps": 1}, "heads": {"projector": {"kind": "toy_mlp"}}}
    apply_overrides(document, ["run.steps=2", "run.steps=3", "heads.projector.size=8", "run.seed=1"], "r.toml")
    assert document == {"run": {"steps": 3, "seed": 1}, "heads": {"projector": {"kind": "toy_mlp", "size": 8}}}


def test_overrides_are_validated_like_the_file(toy_host: PluginHost, write_recipe) -> None:
    recipe = resolve(
        str(write_recipe()),
        toy_host,
        ["run.steps=7", "backbone.dropout=0", "backbone.dims=[5]", "optimizer.kind=adamw", "data.size=3"],
    )
    assert recipe.run.steps == 7
    backbone = recipe.components["backbone"].config
    assert backbone.dropout == 0.0 and type(backbone.dropout) is float  # an int is a valid float
    assert backbone.dims == (5,)
    assert recipe.optimizer.kind == "adamw"
    assert recipe.components["data"].config.size == 3


def test_resolved_values_have_exact_types(toy_host: PluginHost, write_recipe) -> None:
    recipe = resolve(str(write_recipe(FULL_RECIPE)), toy_host)
    assert recipe.run == RunSettings(
        name='say "hi" — ünïcode',
        batch_size=256,
        epochs=3,
        steps=40,
        trackers=("tensorboard",),
        grad_clip=3.0,
        mixed_precision="bf16",
    )
    assert recipe.optimizer == OptimizerSettings(
        kind="lars",
        base_lr=0.3,
        weight_decay=1e-6,
        eps=1e-8,
        betas=(0.9, 0.95),
        fixed_lr_prefixes=("predictor.",),
    )
    assert recipe.schedule == ScheduleSettings(warmup_epochs=0.5, weight_decay_end=0.4)
    assert type(recipe.schedule.warmup_epochs) is float
    assert sorted(recipe.components) == [
        "backbone", "data", "eval", "heads.predictor", "heads.projector", "key_store", "loss", "method",
        "target_updater", "views",
    ]  # fmt: skip
    stem = recipe.components["backbone"].config.stem
    assert (stem.channels, stem.scale) == (1, 0.25)
    assert recipe.components["heads.predictor"].config.size == 16  # the config's default
    assert recipe.components["key_store"].entry.provider.plugin == "toy"


def test_schedule_is_optional(toy_host: PluginHost, write_recipe) -> None:
    assert resolve(str(write_recipe()), toy_host).schedule == ScheduleSettings()


def test_resolved_recipe_round_trips(toy_host: PluginHost, toy_plugin, write_recipe, tmp_path: Path) -> None:
    original = resolve(str(write_recipe(FULL_RECIPE)), toy_host, ["loss.temperature=0.07"])
    written = write_resolved(original, tmp_path / "run")
    assert written == tmp_path / "run" / "recipe.toml"
    assert sorted(p.name for p in written.parent.iterdir()) == ["recipe.toml"]  # no partial file left
    text = written.read_text()
    assert text.startswith(f"# resolved from {original.source}\n")
    assert "depth = 2\n" in text  # defaults are written out: the folder alone reproduces the run
    again = resolve(str(written), PluginHost(autoload=False, extra_plugins=[("toy", toy_plugin)]))  # a new host
    assert again.source == str(written)
    for table in ("run", "optimizer", "schedule"):
        assert getattr(again, table) == getattr(original, table)
    assert {t: (s.entry, s.config) for t, s in again.components.items()} == {
        t: (s.entry, s.config) for t, s in original.components.items()
    }
    assert again.to_dict() == original.to_dict()
    assert again.to_toml().split("\n", 1)[1] == original.to_toml().split("\n", 1)[1]


def test_none_values_are_left_out_and_read_back_as_defaults(toy_host: PluginHost, write_recipe, tmp_path) -> None:
    original = resolve(str(write_recipe()), toy_host)
    assert original.run.epochs is None and original.components["backbone"].config.out_dim is None
    document = tomllib.loads(write_resolved(original, tmp_path).read_text())
    assert "epochs" not in document["run"] and "out_dim" not in document["backbone"]
    assert resolve(str(tmp_path / "recipe.toml"), toy_host).run == original.run


def test_check_prints_the_resolved_recipe(cli, toy_plugin, write_recipe) -> None:
    result = cli(["check", write_recipe(), "run.steps=5", "backbone.norm=none"], plugins=[("toy", toy_plugin)])
    assert result.code == 0 and result.err == ""
    document = tomllib.loads(result.out)
    assert document["run"]["steps"] == 5 and document["run"]["batch_size"] == 8
    assert document["backbone"]["kind"] == "toy" and document["backbone"]["norm"] == "none"
    assert document["backbone"]["stem"] == {"channels": 3, "scale": 1.0}


# --- recipes shipped by plugins -------------------------------------------------------------------------------


def _recipe_plugin(make_plugin, register):
    return make_plugin("shipping", sslcore_register_recipes=hookimpl(register))


def test_recipe_named_by_a_plugin(toy_plugin, make_plugin, write_recipe, tmp_path, monkeypatch) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "toy_a.toml").write_text(SHORT_RECIPE)
    (shipped / "toy_b.toml").write_text(SHORT_RECIPE.replace("steps = 40", "steps = 41"))
    (shipped / "notes.txt").write_text("not a recipe")
    single = write_recipe(name="single.toml")

    def register(registry):
        registry.add_directory(shipped)
        registry.add("toy_single", single)

    host = PluginHost(autoload=False, extra_plugins=[("toy", toy_plugin), ("shipping", _recipe_plugin(make_plugin, register))])
    assert {"toy_a", "toy_b", "toy_single"} <= set(host.recipes.names())
    assert host.recipes.get("toy_b").provider.plugin == "shipping"
    monkeypatch.chdir(tmp_path)
    assert resolve("toy_b", host).run.steps == 41
    assert resolve("toy_b.toml", host).source == str(shipped / "toy_b.toml")
    assert resolve("toy_single", host, ["run.steps=9"]).run.steps == 9
    with pytest.raises(SslcoreError, match="recipe 'elsewhere/toy_b.toml' is neither a file nor a known recipe"):
        resolve("elsewhere/toy_b.toml", host)
    # A file in the working directory is a path first.
    (tmp_path / "toy_a").write_text(SHORT_RECIPE.replace("steps = 40", "steps = 3"))
    assert resolve("toy_a", host).run.steps == 3


def test_sslcore_recipes_lists_name_provider_path(cli, toy_plugin, make_plugin, write_recipe) -> None:
    path = write_recipe()
    shipping = _recipe_plugin(make_plugin, lambda registry: registry.add("toy_base", path))
    result = cli(["recipes"], plugins=[("toy", toy_plugin), ("shipping", shipping)])
    assert result.code == 0
    assert f"{'toy_base':<28}shipping  {path}" in result.out.splitlines()


def test_one_recipe_name_from_two_files_is_an_error(toy_plugin, make_plugin, write_recipe) -> None:
    first, second = write_recipe(name="a.toml"), write_recipe(name="b.toml")
    plugins = [
        ("one", _recipe_plugin(make_plugin, lambda registry: registry.add("same", first))),
        ("two", _recipe_plugin(make_plugin, lambda registry: registry.add("same", second))),
    ]
    with pytest.raises(SslcoreError) as error:
        PluginHost(autoload=False, extra_plugins=plugins)
    assert str(error.value) == "recipe 'same' is registered twice: by one and by two; rename one of the recipe files"


# --- what a method sees: component specs and MethodParts ------------------------------------------------------


def test_component_spec_builds_with_runtime_arguments(toy_host: PluginHost, write_recipe) -> None:
    recipe = resolve(str(write_recipe(FULL_RECIPE)), toy_host)
    parts = MethodParts(recipe, num_samples=50, total_steps=40, steps_per_epoch=10)
    assert parts.key_store(dim=12).runtime == {"dim": 12, "num_samples": 50}
    assert parts.head("projector", in_dim=7).runtime == {"in_dim": 7}
    assert parts.target_updater().runtime == {"total_steps": 40}
    assert parts.backbone().config.width == 16
    assert parts.loss().config.temperature == 0.2
    assert parts.has("eval") and not parts.has("heads.other")
    with pytest.raises(SslcoreError, match=r"does not use table \[heads.predictor\]; remove it"):
        parts.check_all_used()
    parts.head("predictor", in_dim=128)
    parts.check_all_used()


def test_missing_table_a_method_needs(toy_host: PluginHost, write_recipe) -> None:
    path = write_recipe()
    parts = MethodParts(resolve(str(path), toy_host), num_samples=1, total_steps=1, steps_per_epoch=1)
    with pytest.raises(SslcoreError) as error:
        parts.key_store(dim=4)
    assert str(error.value) == f"{path}: method 'toy' needs a [key_store] table; add [key_store] with a kind"


def test_factory_errors_are_located_at_their_table(toy_plugin, make_plugin, write_recipe) -> None:
    def refuse(config, **runtime):
        raise SslcoreError("width 8 is too small for this toy")

    @hookimpl
    def register(registry):
        registry.add("picky", refuse, toy_plugin.ToyBackboneConfig)

    host = PluginHost(autoload=False, extra_plugins=[("toy", toy_plugin), ("picky", make_plugin("picky", sslcore_register_backbones=register))])
    path = write_recipe()
    recipe = resolve(str(path), host, ["backbone.kind=picky"])
    assert recipe.components["backbone"].entry.provider.plugin == "picky"
    with pytest.raises(SslcoreError) as error:
        recipe.components["backbone"].build()
    assert str(error.value) == f"{path} [backbone]: width 8 is too small for this toy"


@pytest.mark.parametrize("table", ["run", "optimizer", "schedule"])
def test_engine_tables_are_documented(table: str) -> None:
    """docs/recipes.md has one row per field of each engine table, in the class's order."""
    from sslcore.recipe import SETTINGS_TABLES

    docs = (Path(__file__).resolve().parents[2] / "docs" / "recipes.md").read_text()
    section = docs.split(f"\n## [{table}]\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
    assert rows == [field.name for field in attrs.fields(SETTINGS_TABLES[table])]
