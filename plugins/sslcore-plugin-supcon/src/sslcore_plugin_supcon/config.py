"""The ``supcon`` method's options (recipe table ``[method]``); the method itself is built by
:mod:`sslcore_plugin_supcon.method`, imported only when a run builds it (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class SupConMethodConfig:
    """SupCon: supervised contrastive learning over all views of the global batch (optionally plus a labelled queue).

    The ``supcon`` method has no options of its own. Recipe tables it uses: ``[backbone]``,
    ``[heads.projector]`` (SupConResNet's 'mlp' head: ``kind = "mlp"``, ``num_layers = 2``, ``hidden_dim`` = the
    backbone width, ``out_dim = 128``), ``[loss]`` (``supcon``) and ``[key_store]``: ``in_batch`` (the paper), or
    ``queue`` with ``store_labels = true`` (the extension)."""
