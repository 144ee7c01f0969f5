"""Registers the ``mocov3`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_mocov3.config import MoCoV3Config


@hookimpl
def sslcore_register_methods(registry):
    registry.add("mocov3", "sslcore_plugin_mocov3.method:build_mocov3", MoCoV3Config)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_mocov3") / "recipes")
