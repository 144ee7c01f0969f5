"""Registers the ``jem`` and ``hdge`` methods, the ``wrn`` backbone, the ``padcrop`` view, the ``hybrid`` evaluator
and the recipes shipped in ``recipes/``."""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_jem.evaluate import HybridEvalConfig, build_hybrid
from sslcore_plugin_jem.method import HdgeConfig, JemConfig, build_hdge, build_jem
from sslcore_plugin_jem.views import PadCropViewsConfig, build_padcrop
from sslcore_plugin_jem.wrn import WideResNetConfig, build_wide_resnet


@hookimpl
def sslcore_register_methods(registry):
    registry.add("jem", build_jem, JemConfig)
    registry.add("hdge", build_hdge, HdgeConfig)


@hookimpl
def sslcore_register_backbones(registry):
    registry.add("wrn", build_wide_resnet, WideResNetConfig)


@hookimpl
def sslcore_register_transforms(registry):
    registry.add("padcrop", build_padcrop, PadCropViewsConfig)


@hookimpl
def sslcore_register_evaluators(registry):
    registry.add("hybrid", build_hybrid, HybridEvalConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_jem") / "recipes")
