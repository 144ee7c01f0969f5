"""Recipes shipped by plugins, addressable by name instead of a path."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources.abc import Traversable
from pathlib import Path

import attrs

from sslcore.errors import SslcoreError
from sslcore.registry import Provider


@attrs.frozen
class RecipeEntry:
    name: str
    path: Path
    provider: Provider


class RecipeRegistry:
    """Named recipe files. The plugin manager sets :attr:`provider` around each hook call."""

    def __init__(self) -> None:
        self.provider = Provider("unknown")
        self._entries: dict[str, RecipeEntry] = {}

    def add(self, name: str, path: str | Path | Traversable) -> None:
        path = Path(str(path))
        previous = self._entries.get(name)
        if previous is not None and previous.path != path:
            raise SslcoreError(
                f"recipe '{name}' is registered twice: by {previous.provider} and by {self.provider}",
                hint="rename one of the recipe files",
            )
        self._entries[name] = RecipeEntry(name, path, self.provider)

    def add_directory(self, directory: str | Path | Traversable) -> None:
        """Register every ``*.toml`` in ``directory`` under its file stem."""
        for path in sorted(Path(str(directory)).glob("*.toml")):
            self.add(path.stem, path)

    def get(self, name: str) -> RecipeEntry | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[RecipeEntry]:
        return iter(self._entries[name] for name in self.names())
