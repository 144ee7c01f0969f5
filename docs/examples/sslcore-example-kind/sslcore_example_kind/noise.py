"""The ``noise`` kind, added to sslcore from outside, and one noise of that kind: ``gaussian``.

This module holds only what ``sslcore list`` and ``sslcore check`` read: the kind, the options and the
registration. The noise itself is named by its import path, ``"module:function"``, so torch is imported only when a
run builds it (:mod:`sslcore_example_kind.gaussian`).
"""

from __future__ import annotations

import attrs

import sslcore
from sslcore_example_kind import hookspecs


@attrs.frozen(kw_only=True)
class GaussianNoiseConfig:
    """Adds Gaussian noise to images while training; the identity in eval mode.

    ``std``: the standard deviation of the noise, in the units of the normalised images.
    """

    std: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))


@sslcore.hookimpl
def sslcore_add_kinds(kinds):
    # Recipes name one noise in [noise] or several in [noises.<name>]; factories take no runtime arguments.
    kinds.add("noise", hookspecs.sslcore_register_noises, table="noise", named="noises")


@sslcore.hookimpl
def sslcore_register_noises(registry):
    # The description `sslcore list` shows is the config's first docstring line (the factory is not imported).
    registry.add("gaussian", "sslcore_example_kind.gaussian:GaussianNoise", GaussianNoiseConfig)
