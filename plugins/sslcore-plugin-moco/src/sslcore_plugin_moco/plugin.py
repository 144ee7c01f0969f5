"""Registers the ``moco`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_moco.method import MoCoConfig, build_moco


@hookimpl
def sslcore_register_methods(registry):
    registry.add("moco", build_moco, MoCoConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_moco") / "recipes")
