"""Registers the ``jem`` and ``hdge`` methods, the ``wrn`` backbone, the ``padcrop`` view, the ``hybrid`` evaluator
and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_jem.config import HdgeConfig, HybridEvalConfig, JemConfig, PadCropViewsConfig, WideResNetConfig


@hookimpl
def sslcore_register_methods(registry):
    registry.add("jem", "sslcore_plugin_jem.method:build_jem", JemConfig)
    registry.add("hdge", "sslcore_plugin_jem.method:build_hdge", HdgeConfig)


@hookimpl
def sslcore_register_backbones(registry):
    registry.add("wrn", "sslcore_plugin_jem.wrn:build_wide_resnet", WideResNetConfig)


@hookimpl
def sslcore_register_transforms(registry):
    registry.add("padcrop", "sslcore_plugin_jem.views:build_padcrop", PadCropViewsConfig)


@hookimpl
def sslcore_register_evaluators(registry):
    registry.add("hybrid", "sslcore_plugin_jem.evaluate:build_hybrid", HybridEvalConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_jem") / "recipes")
