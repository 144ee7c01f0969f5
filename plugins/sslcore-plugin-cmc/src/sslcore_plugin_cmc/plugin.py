"""Registers the ``cmc`` method, the ``cmc`` view transform and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_cmc.config import CMCConfig, CMCViewsConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("cmc", "sslcore_plugin_cmc.method:build_cmc", CMCConfig)


@hookimpl
def sslcore_register_transforms(registry):
    registry.add("cmc", "sslcore_plugin_cmc.views:build_cmc_views", CMCViewsConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_cmc") / "recipes")
