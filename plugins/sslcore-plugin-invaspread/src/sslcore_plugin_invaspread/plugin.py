"""Registers the ``invaspread`` method and the recipes shipped in ``recipes/`` (its loss, ``invaspread``, is a
built-in loss of sslcore)."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_invaspread.config import InvaSpreadConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("invaspread", "sslcore_plugin_invaspread.method:build_invaspread", InvaSpreadConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_invaspread") / "recipes")
