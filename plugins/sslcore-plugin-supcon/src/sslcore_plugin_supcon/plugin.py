"""Registers the ``supcon`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_supcon.config import SupConMethodConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("supcon", "sslcore_plugin_supcon.method:build_supcon", SupConMethodConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_supcon") / "recipes")
