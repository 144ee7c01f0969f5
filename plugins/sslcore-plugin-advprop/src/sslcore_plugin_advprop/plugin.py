"""Registers the ``advprop`` method (supervised classification), the ``crop_flip`` views and the recipes shipped in
``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_advprop.config import CropFlipViewsConfig, SupervisedConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("advprop", "sslcore_plugin_advprop.method:build_supervised", SupervisedConfig)


@hookimpl
def sslcore_register_transforms(registry):
    registry.add("crop_flip", "sslcore_plugin_advprop.views:build_crop_flip", CropFlipViewsConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_advprop") / "recipes")
