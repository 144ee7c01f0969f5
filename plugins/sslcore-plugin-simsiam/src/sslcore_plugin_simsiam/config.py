"""The ``simsiam`` method's options (recipe table ``[method]``); the method itself is built by
:mod:`sslcore_plugin_simsiam.method`, imported only when a run builds it (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class SimSiamConfig:
    """SimSiam: encoder and predictor, negative cosine to the stop-gradient encoder output of the other view.

    The ``simsiam`` method has no options of its own. Its recipe tables: ``[backbone]``, ``[heads.projector]``,
    ``[heads.predictor]`` (input and output width: the projector's output), ``[target_updater]`` (``stop_grad``)
    and ``[loss]`` (``negative_cosine``)."""
