"""Overrides that change a recipe's shape, not only its values (:func:`sslcore.recipe.apply_overrides`).

- ``TABLE=none`` removes a table: ``eval=none`` trains without evaluation, ``heads.predictor=none`` drops a named
  table. A top-level name the recipe lacks is left absent; elsewhere ``none`` on a key that is not a table is the
  string ``"none"`` (``optimizer.lr_scaling=none``).
- ``TABLE.kind=NEW`` switches a component table to another kind: the table's other keys, which belonged to the old kind,
  are dropped with a note on stderr, and only the keys the overrides give (before or after the switch) are kept,
  so that ``data.kind=parquet data.train=…`` works on a recipe whose ``[data]`` was ``digits``.
"""

from __future__ import annotations

from typing import Any

from sslcore.console import err

#: The value that removes a table.
REMOVE = "none"


def remove_table(document: dict[str, Any], keys: list[str], value: Any) -> bool:
    """Apply ``PATH=none`` when it removes a table; False when this override is an ordinary assignment."""
    if not (isinstance(value, str) and value.lower() == REMOVE):
        return False
    *parents, leaf = keys
    node: Any = document
    for key in parents:
        node = node.get(key)
        if not isinstance(node, dict):
            return False
    if isinstance(node.get(leaf), dict):
        del node[leaf]
        return True
    return len(keys) == 1 and leaf not in node  # a top-level table the recipe does not have: nothing to remove


class KindSwitches:
    """Tracks the keys overrides give each table, and the component tables whose ``kind`` they change (not those in
    ``settings``, whose ``kind`` is one of their options: ``optimizer.kind=adamw`` keeps ``optimizer.base_lr``)."""

    def __init__(self, settings: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.given: dict[tuple[str, ...], set[str]] = {}
        self.old: dict[tuple[str, ...], tuple[Any, set[str]]] = {}

    def before(self, node: dict[str, Any], keys: list[str]) -> None:
        """Called before an override assigns ``keys`` in ``node`` (the table that holds the last key)."""
        table = tuple(keys[:-1])
        if keys[-1] == "kind" and table not in self.old and keys[0] not in self.settings:
            self.old[table] = (node.get("kind"), set(node) - self.given.get(table, set()))
        self.given.setdefault(table, set()).add(keys[-1])

    def drop_old_keys(self, document: dict[str, Any]) -> None:
        """Remove the old kind's keys from every table whose kind changed, with a note naming them."""
        for table, (old_kind, old_keys) in self.old.items():
            node: Any = document
            for key in table:
                node = node.get(key) if isinstance(node, dict) else None
            if not isinstance(node, dict) or node.get("kind") == old_kind or old_kind is None:
                continue
            dropped = sorted(old_keys - self.given[table] - {"kind"})
            for key in dropped:
                node.pop(key, None)
            if dropped:
                name = ".".join(table)
                err.print(
                    f"note: {name}.kind switched from {old_kind!r} to {node['kind']!r}: dropped the old kind's "
                    f"keys {', '.join(f'{name}.{key}' for key in dropped)}",
                    markup=False,
                    highlight=False,
                )
