"""``noisy_pair``: two views, each noised by the recipe's ``[noise]``, through one backbone; the loss is the
symmetric negative cosine between their features with a stop-gradient on the other side (SimSiam without heads).

The options and the registration; the method is :mod:`sslcore_example_kind.noisy_pair`, imported on first build."""

from __future__ import annotations

from importlib.resources import files

import attrs

import sslcore


@attrs.frozen(kw_only=True)
class NoisyPairConfig:
    """Two noised views, one backbone, negative cosine (uses the noise kind).

    No options.
    """


@sslcore.hookimpl
def sslcore_register_methods(registry):
    registry.add("noisy_pair", "sslcore_example_kind.noisy_pair:build", NoisyPairConfig)


@sslcore.hookimpl
def sslcore_register_recipes(registry):
    registry.add_directory(files("sslcore_example_kind") / "recipes")
