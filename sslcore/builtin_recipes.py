"""Recipes shipped with sslcore itself (package data under ``sslcore/recipes``)."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore") / "recipes")
