"""Registers the CLAE recipes shipped in ``recipes/`` (the methods come from the simclr and invaspread plugins;
the attack and the auxiliary BatchNorm from the core)."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_clae") / "recipes")
