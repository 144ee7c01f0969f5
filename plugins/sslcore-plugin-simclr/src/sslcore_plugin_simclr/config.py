"""The ``simclr`` method's options (recipe table ``[method]``); the method itself is built by
:mod:`sslcore_plugin_simclr.method`, imported only when a run builds it (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class SimCLRConfig:
    """SimCLR v1 / v2: one encoder and projection head, NT-Xent over the global batch of both views.

    The ``simclr`` method (recipe tables: ``[backbone]``, ``[heads.projector]``, ``[key_store]`` and ``[loss]``).

    Fields:
        eval_from_projector_layer: how many blocks of the projection head (Linear -> BatchNorm -> ReLU) sit on
            top of the backbone in the network to fine-tune or evaluate. 0: the backbone alone (SimCLR v1). 1: the
            backbone and the head's first layer, from which SimCLR v2 fine-tunes (sec. 2.2; official
            ``--ft_proj_selector=1``). Must be smaller than the projection head's number of layers.
    """

    eval_from_projector_layer: int = attrs.field(default=0, validator=attrs.validators.ge(0))
