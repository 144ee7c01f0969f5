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

from sslcore.lookup import LookupDesign, LookupMethod, build_lookup
from sslcore.method import MethodParts
from sslcore_plugin_moco.config import MoCoConfig


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
