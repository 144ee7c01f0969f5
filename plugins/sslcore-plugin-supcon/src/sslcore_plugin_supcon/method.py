"""SupCon (Khosla et al. 2020, "Supervised Contrastive Learning", Eq. 2, L^sup_out) as a look-up method, as the
official HobbitLong/SupContrast ``main_supcon.py``: every view of the global batch through one encoder as one
batch, ``z = normalize(projector(backbone(x)))``, and each anchor contrasted with every other view of the global
batch; its positives are the views with its label.

The contrast set is always the global batch; a ``[key_store]`` other than ``in_batch`` adds its keys to it (a
``queue`` with ``store_labels = true``: the labelled keys of earlier batches, as the released ImageNet model).
"""

from __future__ import annotations

from sslcore.components.key_stores import InBatchKeys
from sslcore.lookup import LookupDesign, LookupMethod, build_lookup
from sslcore.method import MethodParts
from sslcore_plugin_supcon.config import SupConMethodConfig


def build_supcon(config: SupConMethodConfig, parts: MethodParts) -> LookupMethod:
    """SupCon: supervised contrastive learning over all views of the global batch (optionally plus a labelled queue)."""
    design = LookupDesign(
        pairs=((0, 1), (1, 0)), joint=True, keys_from="online", one_pass=True, normalize=True, labels=True
    )
    method = build_lookup("supcon", design, parts)
    if method.stores[0].sharding != "in_batch":  # the global batch first, then the store's keys
        method.stores.insert(0, InBatchKeys(method.stores[0].dim))
    return method
