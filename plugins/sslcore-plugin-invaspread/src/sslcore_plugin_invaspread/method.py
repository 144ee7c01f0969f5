"""InvaSpread (Ye et al. 2019, "Unsupervised Embedding Learning via Invariant and Spreading Instance Feature",
sec. 3.1) as a look-up method: ``f = normalize(embedding(backbone(x)))`` for both views of the batch in one pass
(the official ``torch.cat((inputs1, inputs2), 0)``), each feature contrasted with the 2N features of the global
batch, its positive the other view of its image, by the ``invaspread`` loss.
"""

from __future__ import annotations

import attrs

from sslcore.lookup import LookupDesign, LookupMethod, build_lookup
from sslcore.method import MethodParts


@attrs.frozen(kw_only=True)
class InvaSpreadConfig:
    """The ``invaspread`` method has no options of its own. Recipe tables it uses: ``[backbone]``,
    ``[heads.embedding]`` (the linear layer to the 128-d feature), ``[key_store]`` (``in_batch``; the loss treats
    the gathered features as constants, as the official code, so ``stop_gradient = true`` saves the backward
    all-reduce without changing anything) and ``[loss]`` (``invaspread``)."""


def build_invaspread(config: InvaSpreadConfig, parts: MethodParts) -> LookupMethod:
    """InvaSpread: one encoder, two views, softmax embedding over the (global) batch; no memory bank."""
    design = LookupDesign(
        pairs=((0, 1), (1, 0)), joint=True, keys_from="online", head="embedding", one_pass=True, normalize=True
    )
    return build_lookup("invaspread", design, parts)
