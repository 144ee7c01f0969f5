"""Registers the ``dino`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_dino.method import DINOConfig, build_dino


@hookimpl
def sslcore_register_methods(registry):
    registry.add("dino", build_dino, DINOConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_dino") / "recipes")
