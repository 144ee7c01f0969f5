"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations", Alg. 1) and
SimCLR v2 (Chen et al. 2020b, "Big Self-Supervised Models are Strong Semi-Supervised Learners", sec. 2.1-2.2) as a
look-up method.

One encoder ``f`` and projection head ``g`` for both views; NT-Xent (Eq. 1) where each of the 2N views of the
global batch has its other view as positive and the other 2N-2 views as negatives. As in the official code
(google-research/simclr ``model.py``: ``tf.concat(features_list, 0)``) the two views go through the network as
one batch of 2N, so BatchNorm normalises over both views; with several processes the engine's SyncBatchNorm gives
the paper's "global BN" (sec. 2.2) and the ``in_batch`` key store gathers the projections of every rank WITH
gradient (``tpu_cross_replica_concat`` in ``objective.py``). v1 and v2 differ by recipe only.
"""

from __future__ import annotations

from sslcore.lookup import LookupDesign, LookupMethod, build_lookup
from sslcore.method import MethodParts
from sslcore_plugin_simclr.config import SimCLRConfig


def build_simclr(config: SimCLRConfig, parts: MethodParts) -> LookupMethod:
    """SimCLR v1 / v2: one encoder and projection head, NT-Xent over the global batch of both views."""
    design = LookupDesign(
        pairs=((0, 1), (1, 0)),
        joint=True,
        keys_from="online",
        one_pass=True,
        eval_from_projector_layer=config.eval_from_projector_layer,
    )
    return build_lookup("simclr", design, parts)
