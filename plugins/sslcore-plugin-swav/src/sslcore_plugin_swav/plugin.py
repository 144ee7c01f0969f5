"""Registers the ``swav`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_swav.config import SwAVConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("swav", "sslcore_plugin_swav.method:build_swav", SwAVConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_swav") / "recipes")
