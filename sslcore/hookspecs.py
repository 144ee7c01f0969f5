"""Hook specifications: the contract between sslcore and its plugins.

``sslcore_add_kinds`` runs first and may add component kinds; then every registration hook receives a registry
and calls ``registry.add(name, factory, config)``. Implementations may accept fewer arguments than the spec, and
must be marked with ``@sslcore.hookimpl``. A plugin that adds a kind declares its registration hook with
:data:`hookspec` in a module of its own.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("sslcore")


@hookspec
def sslcore_add_kinds(kinds):
    """Add component kinds: ``kinds.add(name, spec, table=..., named=..., runtime=(...))``.

    ``spec`` is the kind's registration hook, a function marked with ``@hookspec`` (``sslcore_register_<kinds>``);
    its docstring is the kind's contract. Components of the kind live in the recipe table ``[table]`` (one) and /
    or ``[named.<name>]`` (several); ``runtime`` names the keyword arguments their factories take besides the config.
    Runs before every registration hook.
    """


@hookspec
def sslcore_register_backbones(registry):
    """Register backbones: ``factory(config) -> nn.Module`` with an int attribute ``num_features``."""


@hookspec
def sslcore_register_heads(registry):
    """Register heads: ``factory(config, in_dim: int) -> nn.Module`` with an int attribute ``out_dim``."""


@hookspec
def sslcore_register_key_stores(registry):
    """Register key stores: ``factory(config, dim: int, num_samples: int) -> sslcore.KeyStore``.

    ``dim`` is the width of the keys, ``num_samples`` the size of the training set (for memory banks).
    """


@hookspec
def sslcore_register_target_updaters(registry):
    """Register target updaters: ``factory(config, total_steps: int) -> sslcore.TargetUpdater``."""


@hookspec
def sslcore_register_losses(registry):
    """Register losses: ``factory(config) -> nn.Module``; the call signature is the loss's own."""


@hookspec
def sslcore_register_methods(registry):
    """Register methods: ``factory(config, parts: sslcore.MethodParts) -> sslcore.Method``."""


@hookspec
def sslcore_register_datasets(registry):
    """Register dataset sources: ``factory(config, split: str) -> datasets.Dataset`` with columns
    ``image`` (PIL images), ``label`` (int, optional) and ``index`` (int)."""


@hookspec
def sslcore_register_transforms(registry):
    """Register view transforms: ``factory(config) -> callable(PIL.Image) -> list[Tensor]`` (one per view)."""


@hookspec
def sslcore_register_evaluators(registry):
    """Register evaluators: ``factory(config) -> sslcore.Evaluator``."""


@hookspec
def sslcore_register_attacks(registry):
    """Register attacks: ``factory(config, mean: tuple, std: tuple) -> sslcore.components.attacks.Attack``.

    ``mean`` / ``std`` are the views' normalisation, so an attack works in pixel space.
    """


@hookspec
def sslcore_register_sample_buffers(registry):
    """Register sample buffers: ``factory(config) -> sslcore.components.sample_buffers.SampleBuffer``.

    A replay buffer of images that SGLD chains start from (``draw``) and return to (``write``), one part per process.
    """


@hookspec
def sslcore_register_recipes(registry):
    """Register recipes shipped by a plugin: ``registry.add(name, path)`` or ``registry.add_directory(path)``."""
