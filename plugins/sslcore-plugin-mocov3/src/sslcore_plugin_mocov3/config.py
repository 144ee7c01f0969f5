"""The ``mocov3`` method's options (recipe table ``[method]``); the method itself is built by
:mod:`sslcore_plugin_mocov3.method`, imported only when a run builds it (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class MoCoV3Config:
    """MoCo v3: momentum encoder, predictor, symmetric contrastive loss over the global batch.

    The ``mocov3`` method has no options of its own. Its parts are the ``[backbone]``,
    ``[heads.projector]``, ``[heads.predictor]``, ``[key_store]`` (``in_batch``, ``stop_gradient = true``),
    ``[target_updater]`` (``ema``, cosine from 0.99 to 1) and ``[loss]`` (``mocov3_contrastive``) tables."""
