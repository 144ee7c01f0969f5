"""Registers the ``moco`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_moco.config import MoCoConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("moco", "sslcore_plugin_moco.method:build_moco", MoCoConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_moco") / "recipes")
