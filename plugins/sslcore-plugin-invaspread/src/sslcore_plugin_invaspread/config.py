"""The ``invaspread`` method's options (recipe table ``[method]``); the method itself is built by
:mod:`sslcore_plugin_invaspread.method`, imported only when a run builds it (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class InvaSpreadConfig:
    """InvaSpread: one encoder, two views, softmax embedding over the (global) batch; no memory bank.

    The ``invaspread`` method has no options of its own. Recipe tables it uses: ``[backbone]``,
    ``[heads.embedding]`` (the linear layer to the 128-d feature), ``[key_store]`` (``in_batch``; the loss treats
    the gathered features as constants, as the official code, so ``stop_gradient = true`` saves the backward
    all-reduce without changing anything) and ``[loss]`` (``invaspread``)."""
