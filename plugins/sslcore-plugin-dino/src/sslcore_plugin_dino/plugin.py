"""Registers the ``dino`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_dino.config import DINOConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("dino", "sslcore_plugin_dino.method:build_dino", DINOConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_dino") / "recipes")
