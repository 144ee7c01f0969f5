"""Registers the ``simclr`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_simclr.config import SimCLRConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("simclr", "sslcore_plugin_simclr.method:build_simclr", SimCLRConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_simclr") / "recipes")
