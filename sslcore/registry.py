"""Registries: one per component kind, mapping a name to a factory, an attrs config class and its provider."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs

from sslcore.errors import SslcoreError, did_you_mean

#: Component kinds, in the order `sslcore list` shows them. Each is a recipe table name too.
KINDS: tuple[str, ...] = (
    "backbone",
    "head",
    "key_store",
    "target_updater",
    "loss",
    "method",
    "dataset",
    "transform",
    "evaluator",
)


@attrs.frozen
class Provider:
    """Who registered an entry: a plugin name and, when it comes from a distribution, its version."""

    plugin: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.plugin} {self.version}" if self.version else self.plugin


@attrs.frozen
class Entry:
    """One registered component: ``factory(config, **runtime) -> component``."""

    kind: str
    name: str
    factory: Callable[..., Any]
    config: type
    provider: Provider
    description: str = ""

    def build(self, config: Any, **runtime: Any) -> Any:
        return self.factory(config, **runtime)


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
        factory: Callable[..., Any],
        config: type,
        *,
        description: str = "",
        replace: bool = False,
    ) -> Entry:
        """Register ``name``; a second registration is an error unless ``replace=True``."""
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
        if not description:
            lines = (factory.__doc__ or "").strip().splitlines()
            description = lines[0] if lines else ""
        entry = Entry(self.kind, name, factory, config, self.provider, description)
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
    """All registries, one per kind in :data:`KINDS`."""

    def __init__(self) -> None:
        self._by_kind = {kind: Registry(kind) for kind in KINDS}

    def __getitem__(self, kind: str) -> Registry:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise SslcoreError(f"unknown component kind '{kind}'", hint=did_you_mean(kind, KINDS)) from None

    def __iter__(self) -> Iterator[Registry]:
        return iter(self._by_kind.values())
