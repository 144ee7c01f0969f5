"""InvaSpread (Ye et al. 2019, "Unsupervised Embedding Learning via Invariant and Spreading Instance Feature").

One encoder, no memory bank and no momentum network: both augmented views of the B images of a batch go through
the network together (official ``demo_seen.py``: ``inputs = torch.cat((inputs1, inputs2), 0)``, so BatchNorm
normalises over all 2B images), each becomes a 128-d unit vector (``models/resnet_cifar.py``: ``linear`` then
``Normalize(2)``), and the ``invaspread`` loss (sec. 3.1, official ``BatchCriterion``) pulls the two views of an
image together and spreads the other instances of the batch apart. With several processes the other instances
are those of the global batch, gathered by the ``in_batch`` key store; the engine's SyncBatchNorm makes the
BatchNorm statistics global too.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.key_stores import InBatchKeys
from sslcore.errors import SslcoreError
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo
from sslcore_plugin_invaspread.loss import InvaSpreadLoss


@attrs.frozen(kw_only=True)
class InvaSpreadConfig:
    """The ``invaspread`` method has no options of its own. Recipe tables it uses: ``[backbone]``,
    ``[heads.embedding]`` (the linear layer to the 128-d feature), ``[key_store]`` (``in_batch``; the loss treats
    the gathered features as constants, as the official code, so ``stop_gradient = true`` saves the backward
    all-reduce without changing anything) and ``[loss]`` (``invaspread``)."""


class InvaSpread(Method):
    """``f = normalize(embedding(backbone(x)))`` for both views; the loss of this process's images against the
    global batch."""

    def __init__(self, backbone: nn.Module, embedding: nn.Module, key_store: InBatchKeys, loss: InvaSpreadLoss) -> None:
        super().__init__()
        self.backbone = backbone
        self.embedding = embedding
        self.key_store = key_store
        self.loss = loss

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:
        if len(batch.views) != 2 or batch.views[0].shape != batch.views[1].shape:
            shapes = [tuple(view.shape) for view in batch.views]
            raise SslcoreError(
                f"invaspread trains on 2 views of the same shape per image, got views of shapes {shapes}",
                hint="use a view transform with num_views = 2",
            )
        features = F.normalize(self.embedding(self.backbone(torch.cat(batch.views))).float(), dim=1)
        f1, f2 = features.chunk(2)
        all_f1, offset = self.key_store.gather(f1)
        all_f2, _ = self.key_store.gather(f2)
        return MethodOutput(self.loss(torch.stack([f1, f2], dim=1), torch.stack([all_f1, all_f2], dim=1), offset))


def build_invaspread(config: InvaSpreadConfig, parts: MethodParts) -> InvaSpread:
    """InvaSpread: one encoder, two views, softmax embedding over the (global) batch; no memory bank."""
    backbone = parts.backbone()
    embedding = parts.head("embedding", in_dim=backbone.num_features)
    key_store = parts.key_store(embedding.out_dim)
    if not isinstance(key_store, InBatchKeys):
        raise SslcoreError(
            f"invaspread contrasts the current batch, got key store {type(key_store).__name__}",
            hint='set [key_store] kind = "in_batch" (InvaSpread has no memory bank)',
        )
    loss = parts.loss()
    if not isinstance(loss, InvaSpreadLoss):
        raise SslcoreError(
            f"invaspread needs its own loss, got {type(loss).__name__}",
            hint='set [loss] kind = "invaspread" (called as loss(features, all_features, offset))',
        )
    return InvaSpread(backbone, embedding, key_store, loss)
