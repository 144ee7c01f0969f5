"""InvaSpread (Ye et al. 2019, "Unsupervised Embedding Learning via Invariant and Spreading Instance Feature",
sec. 3.1) as a look-up method: ``f = normalize(embedding(backbone(x)))`` for both views of the batch in one pass
(the official ``torch.cat((inputs1, inputs2), 0)``), each feature contrasted with the 2N features of the global
batch, its positive the other view of its image, by the ``invaspread`` loss.
"""

from __future__ import annotations

from sslcore.lookup import LookupDesign, LookupMethod, build_lookup
from sslcore.method import MethodParts
from sslcore_plugin_invaspread.config import InvaSpreadConfig


def build_invaspread(config: InvaSpreadConfig, parts: MethodParts) -> LookupMethod:
    """InvaSpread: one encoder, two views, softmax embedding over the (global) batch; no memory bank."""
    design = LookupDesign(
        pairs=((0, 1), (1, 0)), joint=True, keys_from="online", head="embedding", one_pass=True, normalize=True
    )
    return build_lookup("invaspread", design, parts)
