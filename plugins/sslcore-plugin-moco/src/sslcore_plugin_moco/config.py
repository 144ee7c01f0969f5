"""The ``moco`` method's options (recipe table ``[method]``); the method itself is built by
:mod:`sslcore_plugin_moco.method`, imported only when a run builds it (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class MoCoConfig:
    """MoCo v1 / v2: momentum key encoder, queue of negatives, InfoNCE, shuffling BN.

    Options of the ``moco`` method. The networks, queue, momentum and temperature are the ``[backbone]``,
    ``[heads.projector]``, ``[key_store]``, ``[target_updater]`` and ``[loss]`` tables.

    Fields:
        shuffle_bn: shuffling BN (sec. 3.3): the key encoder sees the global batch in a random order, split
            into BatchNorm groups, and its outputs are put back in order (official ``_batch_shuffle_ddp``).
            On one process with a single BatchNorm group the permutation cannot change the keys and is skipped.
        bn_group_size: samples per BatchNorm group, for the query and the key encoder alike (unset: each
            process's whole batch, as the official code, where a group is one GPU's batch: 32 samples for
            batch 256 on 8 GPUs). It must divide each process's batch. Turn off the engine's SyncBatchNorm
            (``run.sync_batchnorm = false``): MoCo's BatchNorm is per group by design.
        symmetric: also contrast the second view's query with the first view's key and add the two losses,
            enqueueing both sets of keys (the official CIFAR-10 demo's ``--symmetric``; the paper's loss is
            asymmetric: off).
    """

    shuffle_bn: bool = True
    bn_group_size: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
    symmetric: bool = False
