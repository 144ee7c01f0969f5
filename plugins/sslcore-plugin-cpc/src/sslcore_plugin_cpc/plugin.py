"""Registers the ``context`` component kind with its ``masked_conv`` entry, the ``cpc`` method and its recipes.

A kind rather than a head: the context network is CPC's autoregressive model, a slot with its own contract
(feature grid in, context grid out, causal in rows) that other entries can fill (a masked self-attention, a row
GRU as in CPC v1's audio model), which heads' ``(B, in_dim) -> (B, out_dim)`` contract cannot express.
"""

from __future__ import annotations

from importlib.resources import files

from sslcore import hookimpl
from sslcore_plugin_cpc import hookspecs
from sslcore_plugin_cpc.config import CPCConfig, MaskedConvContextConfig


@hookimpl
def sslcore_add_kinds(kinds):
    kinds.add("context", hookspecs.sslcore_register_contexts, table="context", runtime=("in_dim",))


@hookimpl
def sslcore_register_contexts(registry):
    registry.add("masked_conv", "sslcore_plugin_cpc.context:build_masked_conv", MaskedConvContextConfig)


@hookimpl
def sslcore_register_methods(registry):
    registry.add("cpc", "sslcore_plugin_cpc.method:build_cpc", CPCConfig)


@hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_plugin_cpc") / "recipes")
