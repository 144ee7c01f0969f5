"""Registers the ``instdisc`` method and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_instdisc.config import InstDiscConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("instdisc", "sslcore_plugin_instdisc.method:build_instdisc", InstDiscConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_instdisc") / "recipes")
