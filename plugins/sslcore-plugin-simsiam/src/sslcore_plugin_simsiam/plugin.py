"""Registers the ``simsiam`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_simsiam.config import SimSiamConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("simsiam", "sslcore_plugin_simsiam.method:build_simsiam", SimSiamConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_simsiam") / "recipes")
