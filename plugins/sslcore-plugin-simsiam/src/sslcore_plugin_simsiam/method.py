"""SimSiam (Chen and He 2021, "Exploring Simple Siamese Representation Learning", Algorithm 1, Eq. 2) as a
look-up method without a key store.

``z = f(x)`` (backbone + projector) and ``p = h(z)`` for both views; the loss is ``D(p1, stopgrad(z2))/2 +
D(p2, stopgrad(z1))/2``. With the ``stop_grad`` target the keys are the same forward's ``z``, detached, as the
official code's ``z1.detach()``; another target updater (``ema``, say) gives keys from its own network.
"""

from __future__ import annotations

from sslcore.lookup import LookupDesign, LookupMethod, build_lookup
from sslcore.method import MethodParts
from sslcore_plugin_simsiam.config import SimSiamConfig


def build_simsiam(config: SimSiamConfig, parts: MethodParts) -> LookupMethod:
    """SimSiam: encoder and predictor, negative cosine to the stop-gradient encoder output of the other view."""
    design = LookupDesign(pairs=((0, 1), (1, 0)), predictor=True, reduction="mean", use_key_store=False)
    return build_lookup("simsiam", design, parts)
