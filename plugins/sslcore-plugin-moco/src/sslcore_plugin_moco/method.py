"""MoCo v1 (He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning", Algorithm 1)
and MoCo v2 (Chen et al. 2020, "Improved Baselines with Momentum Contrastive Learning") as a look-up method.

The versions differ only in component tables: v1 has a linear 128-d head, T = 0.07 and the ``mocov1`` views; v2 a
2-layer MLP head (2048 hidden, ReLU), T = 0.2, the ``mocov2`` ("aug+") views and a cosine learning rate. The step
follows the official ``moco/builder.py`` ``MoCo.forward``: the key encoder's momentum update BEFORE the keys are
computed (Algorithm 1 writes it after the optimizer step, which gives the same keys and losses), ``q`` and ``k``
L2-normalised, ``k`` through shuffling BN, InfoNCE against the queue as it was before this step, and this step's
keys of every rank enqueued after it.
"""

from __future__ import annotations

import attrs

from sslcore.lookup import LookupDesign, LookupMethod, build_lookup
from sslcore.method import MethodParts


@attrs.frozen(kw_only=True)
class MoCoConfig:
    """Options of the ``moco`` method. The networks, queue, momentum and temperature are the ``[backbone]``,
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


def build_moco(config: MoCoConfig, parts: MethodParts) -> LookupMethod:
    """MoCo v1 / v2: momentum key encoder, queue of negatives, InfoNCE, shuffling BN."""
    design = LookupDesign(
        pairs=((0, 1), (1, 0)) if config.symmetric else ((0, 1),),
        target_when="before_forward",
        normalize=True,
        shuffle_bn=config.shuffle_bn,
        bn_group_size=config.bn_group_size,
    )
    return build_lookup("moco", design, parts)
