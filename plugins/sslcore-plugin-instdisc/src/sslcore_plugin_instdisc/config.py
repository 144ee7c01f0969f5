"""The ``instdisc`` method's options (recipe table ``[method]``); the method itself is built by
:mod:`sslcore_plugin_instdisc.method`, imported only when a run builds it (so `sslcore list` needs no torch)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class InstDiscConfig:
    """InstDisc: one view, 128-d unit features, NCE against a momentum-updated memory bank.

    The ``instdisc`` method (recipe tables it uses: ``[backbone]``, ``[heads.embedding]`` (the linear layer to
    the 128-d feature), ``[key_store]`` (``memory_bank``) and ``[loss]`` (``nce``)).

    Fields:
        num_negatives: ``m``, the bank entries drawn per image as noise samples (paper sec. 3.2 and official
            ``--nce-k``: 4096); unset, the key store's ``negatives``. They are drawn uniformly with replacement,
            and may include the image's own entry, as the official ``AliasMethod`` draw over uniform unigrams does.
    """

    num_negatives: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
