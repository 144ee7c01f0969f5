"""Registers the ``byol`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_byol.method import BYOLConfig, build_byol


@hookimpl
def sslcore_register_methods(registry):
    registry.add("byol", build_byol, BYOLConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_byol") / "recipes")
