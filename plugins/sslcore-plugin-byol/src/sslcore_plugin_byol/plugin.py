"""Registers the ``byol`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_byol.config import BYOLConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("byol", "sslcore_plugin_byol.method:build_byol", BYOLConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_byol") / "recipes")
