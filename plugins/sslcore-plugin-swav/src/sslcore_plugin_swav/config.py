"""The ``swav`` method's options (recipe table ``[method]``); the method itself is built by
:mod:`sslcore_plugin_swav.method`, imported only when a run builds it (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs
from attrs import validators as v


@attrs.frozen(kw_only=True)
class SwAVConfig:
    """SwAV: multi-crop, projector, L2-normalized prototypes, Sinkhorn codes, swapped prediction, optional queue.

    Options of the ``swav`` method. The networks, the queue and the temperature are the ``[backbone]``,
    ``[heads.projector]``, ``[heads.prototypes]``, ``[key_store]`` (optional) and ``[loss]`` tables.

    Fields:
        crops_for_assign: indices of the views whose codes are computed; each of them is predicted from every
            other view (official ``--crops_for_assign 0 1``: the two global crops, which come first).
        epsilon: entropic regularization of the Sinkhorn-Knopp assignment (sec. 3.1 / ``--epsilon 0.05``).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (``--sinkhorn_iterations 3``).
        freeze_prototypes_niters: the prototypes get no update during this many optimizer steps from the start
            (``--freeze_prototypes_niters``; 313 = one epoch at batch 4096, 5005 = one epoch at batch 256).
        epoch_queue_starts: with a ``[key_store]`` queue, the epoch from which the queue is filled
            (``--epoch_queue_starts 15``); its embeddings join the Sinkhorn assignment once it is full.
    """

    crops_for_assign: tuple[int, ...] = (0, 1)
    epsilon: float = attrs.field(default=0.05, validator=v.gt(0))
    sinkhorn_iterations: int = attrs.field(default=3, validator=v.ge(1))
    freeze_prototypes_niters: int = attrs.field(default=313, validator=v.ge(0))
    epoch_queue_starts: int = attrs.field(default=15, validator=v.ge(0))

    def __attrs_post_init__(self) -> None:
        crops = self.crops_for_assign
        if not crops:
            raise ValueError("crops_for_assign needs at least one view index")
        if any(c < 0 for c in crops) or len(set(crops)) != len(crops):
            raise ValueError(f"crops_for_assign must hold distinct view indices >= 0, got {list(crops)}")
