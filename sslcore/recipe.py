"""Recipes: TOML files naming a combination of components, resolved strictly against the registries."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from sslcore import tomlwrite
from sslcore.config import structure, unstructure
from sslcore.engine.settings import OptimizerSettings, RunSettings, ScheduleSettings
from sslcore.errors import SslcoreError, did_you_mean
from sslcore.overrides import KindSwitches, remove_table
from sslcore.plugins import PluginHost
from sslcore.registry import Entry, Kind, Kinds

#: Top-level tables owned by the engine (``sslcore.registry.ENGINE_TABLES``); every other table is a kind's.
SETTINGS_TABLES: dict[str, type] = {"run": RunSettings, "optimizer": OptimizerSettings, "schedule": ScheduleSettings}
#: Tables every recipe has; a kind's table is also present as its named tables (``[backbones.<name>]``).
REQUIRED_TABLES = ("run", "data", "views", "backbone", "method", "optimizer")
#: Method kinds whose plugin ships with this repository (for "how to install" hints).
INSTALL_HINT = "install the plugin that provides it (e.g. `pip install sslcore-plugin-{name}`), then check `sslcore list {kind}`"


@attrs.frozen
class ComponentSpec:
    """One resolved component table: which registry entry, with which validated options."""

    table: str
    entry: Entry
    config: Any
    where: str

    @property
    def kind(self) -> str:
        return self.entry.name

    def build(self, **runtime: Any) -> Any:
        """Call the entry's factory; a user mistake it raises is located at this table."""
        try:
            return self.entry.build(self.config, **runtime)
        except SslcoreError as error:
            raise error.located(f"{self.where} [{self.table}]") from None


@attrs.frozen
class Recipe:
    """A fully resolved recipe: engine settings and component specs, every value validated."""

    source: str
    run: RunSettings
    optimizer: OptimizerSettings
    schedule: ScheduleSettings
    #: Resolved component tables by TOML path: ``backbone``, ``backbones.l``, ``heads.projector``.
    components: dict[str, ComponentSpec]
    kinds: Kinds = attrs.field(eq=False, repr=False)

    def get(self, table: str) -> ComponentSpec | None:
        return self.components.get(table)

    def require(self, table: str, *, needed_by: str) -> ComponentSpec:
        spec = self.components.get(table)
        if spec is None:
            raise SslcoreError(
                f"{needed_by} needs a [{table}] table", where=self.source, hint=f"add [{table}] with a kind"
            )
        return spec

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {name: unstructure(getattr(self, name)) for name in SETTINGS_TABLES}
        for table, spec in self.components.items():
            node = document
            *parents, leaf = table.split(".")
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = {"kind": spec.kind, **unstructure(spec.config)}
        return document

    def to_toml(self) -> str:
        return f"# resolved from {self.source}\n" + tomlwrite.dumps(self.to_dict())


def locate(recipe: str, host: PluginHost) -> Path:
    """A recipe argument is a path to a TOML file or the name of a recipe a plugin ships."""
    path = Path(recipe)
    if path.is_file():
        return path
    entry = host.recipes.get(recipe) or host.recipes.get(path.stem if path.suffix == ".toml" else recipe)
    if entry is not None and not path.parent.parts:
        return entry.path
    raise SslcoreError(
        f"recipe '{recipe}' is neither a file nor a known recipe name",
        hint=did_you_mean(path.stem, host.recipes.names()) + "; `sslcore recipes` lists them",
    )


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise SslcoreError(f"malformed TOML: {error}", where=str(path), hint="fix the syntax") from None
    except OSError as error:
        raise SslcoreError(f"cannot read recipe: {error.strerror}", where=str(path)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value); the value is parsed as TOML, a bare word is a string."""
    key, sep, raw = text.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(part.strip() for part in keys):
        raise SslcoreError(
            f"override '{text}' is not of the form table.key=value", hint="e.g. run.steps=100 or backbone.name=resnet18"
        )
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return [part.strip() for part in keys], value


def apply_overrides(document: dict[str, Any], overrides: Sequence[str], where: str) -> None:
    """Apply ``a.b=value`` overrides in order; ``TABLE=none`` removes a table and a ``kind`` switch drops the old
    kind's keys (:mod:`sslcore.overrides`)."""
    switches = KindSwitches(settings=tuple(SETTINGS_TABLES))
    for text in overrides:
        keys, value = parse_override(text)
        if remove_table(document, keys, value):
            continue
        node = document
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if not isinstance(child, dict):
                table = ".".join(keys[: depth + 1])
                raise SslcoreError(
                    f"override '{text}' names table [{table}], which the recipe does not have",
                    where=where,
                    hint=f"add [{table}] to the recipe, or check the spelling",
                )
            node = child
        switches.before(node, keys)
        node[keys[-1]] = value
    switches.drop_old_keys(document)


def resolve(recipe: str, host: PluginHost, overrides: Sequence[str] = ()) -> Recipe:
    """Read, override and validate a recipe. Every mistake is an :class:`SslcoreError` naming file and path."""
    path = locate(recipe, host)
    document = read_toml(path)
    apply_overrides(document, overrides, str(path))
    return resolve_document(document, str(path), host)


def resolve_document(document: dict[str, Any], where: str, host: PluginHost) -> Recipe:
    """Validate an already-read recipe document; ``where`` names its file in errors."""
    kinds = host.kinds
    method = kinds.by_table("method")
    if method is not None and isinstance(document.get("method"), dict):
        # First: an uninstalled method plugin explains the tables, views and components it would have provided.
        _component(document["method"], method, "method", where, host)
    known = [*SETTINGS_TABLES, *kinds.tables()]
    for table in document:
        if table not in known:
            raise SslcoreError(f"unknown table [{table}]", where=where, hint=did_you_mean(table, known))
    for table in REQUIRED_TABLES:
        kind = kinds.by_table(table)
        if table not in document and not (kind and kind.named in document):
            named = f" or [{kind.named}.<name>]" if kind and kind.named else ""
            raise SslcoreError(f"missing table [{table}]", where=where, hint=f"every recipe needs [{table}]{named}")
    settings = {name: structure(document.get(name, {}), cls, where=where, path=name) for name, cls in SETTINGS_TABLES.items()}
    components: dict[str, ComponentSpec] = {}
    for table, value in document.items():
        kind = kinds.by_table(table)
        if kind is None:
            continue
        if table == kind.table:
            components[table] = _component(value, kind, table, where, host)
            continue
        if not isinstance(value, dict) or "kind" in value:
            raise SslcoreError(
                f"expected named tables such as [{table}.<name>]",
                where=f"{where} [{table}]",
                hint=f"for one {kind.name}, write [{kind.table}]" if kind.table else None,
            )
        if kind.table in document and value:
            raise SslcoreError(
                f"[{kind.table}] and [{table}.{next(iter(value))}] both give a {kind.name}",
                where=where,
                hint=f"a recipe has one [{kind.table}] or named [{table}.<name>] tables: rename [{kind.table}]",
            )
        for name, named in value.items():
            components[f"{table}.{name}"] = _component(named, kind, f"{table}.{name}", where, host)
    for table, spec in components.items():
        check_run = getattr(spec.config, "check_run", None)
        if check_run is not None:  # a component's rule against the run (a queue holds one global batch)
            try:
                check_run(settings["run"])
            except SslcoreError as error:
                raise error.located(f"{where} [{table}]") from None
    return Recipe(source=where, components=components, kinds=kinds, **settings)


def resolve_tables(document: dict[str, Any], tables: Sequence[str], where: str, host: PluginHost) -> dict[str, ComponentSpec]:
    """Resolve only some top-level component tables of a recipe document (e.g. a run's data and eval, without its
    method, so that evaluation needs no method plugin)."""
    specs: dict[str, ComponentSpec] = {}
    for table in tables:
        kind = host.kinds.by_table(table)
        if kind is None or table not in document:
            raise SslcoreError(f"missing table [{table}]", where=where, hint=f"add [{table}] with a kind")
        specs[table] = _component(document[table], kind, table, where, host)
    return specs


def _component(table: Any, kind: Kind, path: str, where: str, host: PluginHost) -> ComponentSpec:
    if not isinstance(table, dict):
        raise SslcoreError(f"expected a table with a 'kind', got {table!r}", where=f"{where} [{path}]")
    options = dict(table)
    name = options.pop("kind", None)
    if name is None:
        hint = f"name a {kind.name}: `sslcore list {kind.name}` shows them"
        raise SslcoreError("missing 'kind'", where=f"{where} [{path}]", hint=hint)
    if not isinstance(name, str):
        raise SslcoreError(f"'kind' must be a string, got {name!r}", where=f"{where} [{path}.kind]")
    registry = host.registries[kind.name]
    if name not in registry:
        blocked = host.blocked_hint()
        hint = f"{blocked} (known: {', '.join(registry.names()) or 'none'})" if blocked else did_you_mean(
            name, registry.names())
        if kind.name == "method":
            hint += "; " + INSTALL_HINT.format(name=name, kind=kind.name)
        raise SslcoreError(f"unknown {kind.name} '{name}'", where=f"{where} [{path}.kind]", hint=hint)
    entry = registry.get(name)
    return ComponentSpec(path, entry, structure(options, entry.config, where=where, path=path), where)


def write_resolved(recipe: Recipe, run_dir: Path) -> Path:
    """Write the resolved recipe as ``recipe.toml`` in the run directory (atomically)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / "recipe.toml"
    partial = target.with_suffix(".toml.partial")
    partial.write_text(recipe.to_toml())
    partial.replace(target)
    return target
