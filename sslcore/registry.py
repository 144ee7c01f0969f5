"""Component kinds and their registries: a kind names a registration hook and recipe tables; a registry maps a
name to a factory, an attrs config class and its provider."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from sslcore import hookspecs
from sslcore.errors import SslcoreError, did_you_mean

#: Top-level recipe tables the engine owns (``sslcore.recipe.SETTINGS_TABLES``); no kind may use them.
ENGINE_TABLES: tuple[str, ...] = ("run", "optimizer", "schedule")
#: A factory given by name: ``"package.module:function"``, imported on first build.
_FACTORY_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


@attrs.frozen
class Provider:
    """Who registered an entry: a plugin name and, when it comes from a distribution, its version."""

    plugin: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.plugin} {self.version}" if self.version else self.plugin


def _check_spec(_kind: Any, _attribute: Any, spec: Callable[..., Any]) -> None:
    if not getattr(spec, "__name__", "").startswith("sslcore_register_") or not hasattr(spec, "sslcore_spec"):
        raise SslcoreError(
            f"a kind's registration hook must be a function named sslcore_register_<kinds> and marked with "
            f"@sslcore.hookspecs.hookspec, got {spec!r}",
            hint="declare it in a module of hook specs, as sslcore/hookspecs.py does",
        )


def _check_name(_kind: Any, attribute: Any, name: str | None) -> None:
    if name is not None and not (name.isidentifier() and name.islower()):
        raise SslcoreError(f"a kind's {attribute.name} must be a lower-case identifier, got {name!r}")


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


@attrs.frozen(kw_only=True)
class Kind:
    """A component kind: its registry's name, registration hook, recipe tables and runtime arguments.

    ``table`` holds one component (``[backbone]``), ``named`` several by name (``[backbones.<name>]``); a factory
    is called as ``factory(config, **runtime)`` with exactly the arguments named in ``runtime``.
    """

    name: str = attrs.field(validator=_check_name)
    spec: Callable[..., Any] = attrs.field(validator=_check_spec)
    table: str | None = attrs.field(default=None, validator=_check_name)
    named: str | None = attrs.field(default=None, validator=_check_name)
    runtime: tuple[str, ...] = ()
    provider: Provider = Provider("sslcore")

    def __attrs_post_init__(self) -> None:
        if not self.tables:
            raise SslcoreError(f"component kind '{self.name}' has no recipe table", hint="give table= or named=")

    @property
    def hook(self) -> str:
        """The registration hook's name, e.g. ``sslcore_register_backbones``."""
        return self.spec.__name__

    @property
    def description(self) -> str:
        """The first line of the registration hook's docstring."""
        return _first_line(self.spec.__doc__)

    @property
    def tables(self) -> tuple[str, ...]:
        """Its top-level recipe tables: ``("backbone", "backbones")``."""
        return tuple(table for table in (self.table, self.named) if table is not None)


#: The core's kinds, in the order `sslcore list` shows them; plugins add more with ``sslcore_add_kinds``.
BUILTIN_KINDS: tuple[Kind, ...] = (
    Kind(name="backbone", spec=hookspecs.sslcore_register_backbones, table="backbone", named="backbones"),
    Kind(name="head", spec=hookspecs.sslcore_register_heads, named="heads", runtime=("in_dim",)),
    Kind(name="key_store", spec=hookspecs.sslcore_register_key_stores, table="key_store", named="key_stores",
         runtime=("dim", "num_samples")),
    Kind(name="target_updater", spec=hookspecs.sslcore_register_target_updaters, table="target_updater",
         named="target_updaters", runtime=("total_steps",)),
    Kind(name="loss", spec=hookspecs.sslcore_register_losses, table="loss", named="losses"),
    Kind(name="method", spec=hookspecs.sslcore_register_methods, table="method", runtime=("parts",)),
    Kind(name="dataset", spec=hookspecs.sslcore_register_datasets, table="data", runtime=("split",)),
    Kind(name="transform", spec=hookspecs.sslcore_register_transforms, table="views"),
    Kind(name="evaluator", spec=hookspecs.sslcore_register_evaluators, table="eval"),
    Kind(name="sample_buffer", spec=hookspecs.sslcore_register_sample_buffers, table="sample_buffer",
         named="sample_buffers"),
    Kind(name="attack", spec=hookspecs.sslcore_register_attacks, table="attack", runtime=("mean", "std")),
)


class Kinds:
    """The component kinds of one plugin host: the built-ins, then those plugins add.

    ``sslcore_add_kinds`` hooks receive this object and call :meth:`add`; the plugin manager sets
    :attr:`provider` around each call.
    """

    def __init__(self, kinds: Iterable[Kind] = BUILTIN_KINDS) -> None:
        self.provider = Provider("unknown")
        self._by_name: dict[str, Kind] = {}
        self._by_table: dict[str, Kind] = {}
        for kind in kinds:
            self._add(kind)

    def add(
        self,
        name: str,
        spec: Callable[..., Any],
        *,
        table: str | None = None,
        named: str | None = None,
        runtime: Iterable[str] = (),
    ) -> Kind:
        """Add kind ``name`` whose registration hook is ``spec`` (a function marked ``@hookspec``) and whose
        components live in recipe table ``[table]`` and / or named tables ``[named.<name>]``."""
        return self._add(
            Kind(name=name, spec=spec, table=table, named=named, runtime=tuple(runtime), provider=self.provider)
        )

    def _add(self, kind: Kind) -> Kind:
        previous = self._by_name.get(kind.name)
        if previous is not None:
            raise SslcoreError(
                f"component kind '{kind.name}' is added twice: by {previous.provider} and by {kind.provider}",
                hint="uninstall or block one of them (SSLCORE_BLOCK_PLUGINS)",
            )
        shared = next((k for k in self._by_name.values() if k.hook == kind.hook), None)
        if shared is not None:
            raise SslcoreError(
                f"component kinds '{shared.name}' ({shared.provider}) and '{kind.name}' ({kind.provider}) "
                f"share the registration hook {kind.hook}",
                hint="give each kind its own hook",
            )
        for table in kind.tables:
            owner = self._by_table.get(table)
            if table in ENGINE_TABLES or owner is not None:
                taken = f"kind '{owner.name}' from {owner.provider}" if owner else "the engine"
                raise SslcoreError(
                    f"component kind '{kind.name}' from {kind.provider} uses recipe table [{table}], "
                    f"which {taken} uses",
                    hint="choose another table name",
                )
            self._by_table[table] = kind
        self._by_name[kind.name] = kind
        return kind

    def __getitem__(self, name: str) -> Kind:
        try:
            return self._by_name[name]
        except KeyError:
            raise SslcoreError(f"unknown component kind '{name}'", hint=did_you_mean(name, self._by_name)) from None

    def by_table(self, table: str) -> Kind | None:
        """The kind whose recipe table (``backbone``) or named tables (``backbones``) is ``table``."""
        return self._by_table.get(table)

    def tables(self) -> list[str]:
        """Every kind's top-level recipe tables."""
        return list(self._by_table)

    def __iter__(self) -> Iterator[Kind]:
        return iter(self._by_name.values())


@attrs.frozen
class Entry:
    """One registered component: ``factory(config, **runtime) -> component``.

    ``factory`` is a callable or a ``"package.module:function"`` string, imported on the first :meth:`build`, so
    that listing and checking recipes import no plugin's torch code.
    """

    kind: str
    name: str
    factory: Callable[..., Any] | str
    config: type
    provider: Provider
    description: str = ""

    def build(self, config: Any, **runtime: Any) -> Any:
        return self.load()(config, **runtime)

    def load(self) -> Callable[..., Any]:
        """The factory itself, imported if it was given as a ``"module:function"`` string."""
        if not isinstance(self.factory, str):
            return self.factory
        module, _, function = self.factory.partition(":")
        try:
            return getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError) as error:
            raise SslcoreError(
                f"{self.kind} '{self.name}' from plugin {self.provider}: cannot import its factory "
                f"'{self.factory}': {type(error).__name__}: {error}",
                hint="reinstall the plugin, or fix the factory path it registers",
            ) from error


class Registry:
    """The entries of one component kind.

    Registration hooks receive this object and call :meth:`add`. The plugin manager sets
    :attr:`provider` around each hook call so every entry records who registered it.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.provider = Provider("unknown")
        self._entries: dict[str, Entry] = {}

    def add(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        config: type,
        *,
        description: str = "",
        replace: bool = False,
    ) -> Entry:
        """Register ``name``; a second registration is an error unless ``replace=True``.

        ``factory`` may be a ``"package.module:function"`` string, imported on first build (so that `sslcore list`
        and `sslcore check` import no torch). The description is ``description``, else the first line of the
        factory's docstring (of the config class's when the factory is a string).
        """
        if isinstance(factory, str) and not _FACTORY_PATH.match(factory):
            raise SslcoreError(
                f"{self.kind} '{name}' from plugin {self.provider} has factory {factory!r}, which is not of the form "
                "'package.module:function'",
                hint="give the factory itself or its import path, e.g. 'my_plugin.method:build_method'",
            )
        if not attrs.has(config):
            raise SslcoreError(
                f"{self.kind} '{name}' from plugin {self.provider} has config {config!r}, which is not an attrs class",
                hint="declare its options with @attrs.frozen(kw_only=True)",
            )
        if "kind" in attrs.fields_dict(config):
            raise SslcoreError(
                f"{self.kind} '{name}' from plugin {self.provider} has a config field named 'kind', "
                "which recipes use to name the component",
                hint="rename the field",
            )
        previous = self._entries.get(name)
        if previous is not None and not replace:
            raise SslcoreError(
                f"{self.kind} '{name}' is registered twice: by {previous.provider} and by {self.provider}",
                hint="uninstall or block one of them (SSLCORE_BLOCK_PLUGINS), or register with replace=True",
            )
        documented = config if isinstance(factory, str) else factory
        entry = Entry(self.kind, name, factory, config, self.provider, description or _first_line(documented.__doc__))
        self._entries[name] = entry
        return entry

    def get(self, name: str, *, where: str | None = None) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise SslcoreError(
                f"unknown {self.kind} '{name}'", where=where, hint=did_you_mean(name, self._entries)
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._entries)


class Registries:
    """All registries, one per kind, in the kinds' order."""

    def __init__(self, kinds: Iterable[Kind] = BUILTIN_KINDS) -> None:
        self._by_kind = {kind.name: Registry(kind.name) for kind in kinds}

    def __getitem__(self, kind: str) -> Registry:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise SslcoreError(f"unknown component kind '{kind}'", hint=did_you_mean(kind, self._by_kind)) from None

    def __iter__(self) -> Iterator[Registry]:
        return iter(self._by_kind.values())
