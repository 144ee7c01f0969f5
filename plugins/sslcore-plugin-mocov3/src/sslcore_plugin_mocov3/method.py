"""MoCo v3 (Chen, Xie and He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
Algorithm 1) as a look-up method.

``q1, q2 = predictor(encoder(x1)), predictor(encoder(x2))``; the momentum encoder (updated with the current
encoder before it makes the keys, as the official ``moco/builder.py``) gives ``k1, k2``; the keys of the whole
global batch are the dictionary (``concat_all_gather``, no gradient); the loss is ``ctr(q1, k2) + ctr(q2, k1)``.
"""

from __future__ import annotations

from sslcore.lookup import LookupDesign, LookupMethod, build_lookup
from sslcore.method import MethodParts
from sslcore_plugin_mocov3.config import MoCoV3Config


def build_mocov3(config: MoCoV3Config, parts: MethodParts) -> LookupMethod:
    """MoCo v3: momentum encoder, predictor, symmetric contrastive loss over the global batch."""
    design = LookupDesign(pairs=((0, 1), (1, 0)), target_when="before_forward", predictor=True)
    return build_lookup("mocov3", design, parts)
