"""The ``byol`` method's options (recipe table ``[method]``); the method itself is built by
:mod:`sslcore_plugin_byol.method`, imported only when a run builds it (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class BYOLConfig:
    """BYOL: online network with predictor regressing an EMA target network's projection of the other view.

    The ``byol`` method has no options of its own. Its recipe tables: ``[backbone]``, ``[heads.projector]``,
    ``[heads.predictor]`` (its input width is the projector's output), ``[target_updater]`` (``ema`` with a cosine
    schedule for BYOL) and ``[loss]`` (``normalized_mse``)."""
