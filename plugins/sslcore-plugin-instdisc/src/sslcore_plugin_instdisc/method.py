"""InstDisc (Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination").

Every image is its own class. The network maps one augmented view to a 128-d unit vector ``v = f(x)`` (sec. 3.1:
backbone, linear layer, L2 normalisation); a memory bank holds one vector per training image (sec. 3.1, "Learning
with a memory bank"); the non-parametric softmax over the bank is trained with noise-contrastive estimation
against ``m`` = 4096 entries drawn uniformly from the bank (sec. 3.2, Eq. 3-7, ``nce`` loss), and the bank
entries of the batch are then refreshed with proximal momentum 0.5 (sec. 3.3).

Follows the official zhirongw/lemniscate.pytorch: ``models/resnet.py`` (``fc`` = Linear(width, low_dim) then
``Normalize(2)``), ``lib/NCEAverage.py`` (positive = the bank entry of the sample itself, read together with the
negatives before the update; ``Z`` fixed from the first batch; the bank row of each sample is updated in the
backward pass, i.e. after the loss and before the optimizer step, with the features the loss used) and
``lib/NCECriterion.py``. The memory bank itself is the ``memory_bank`` key store; its update is that of
``NCEFunction.backward``: ``v <- normalize(m * v + (1 - m) * f)``, returned as a key-store write that the engine
applies after the optimizer step (which does not read the bank, so the bank evolves exactly as the official one).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from sslcore.components.key_stores import MemoryBank
from sslcore.components.losses import NCELoss
from sslcore.errors import SslcoreError
from sslcore.method import Batch, KeyWrite, Method, MethodOutput, MethodParts, StepInfo
from sslcore_plugin_instdisc.config import InstDiscConfig


class InstDisc(Method):
    """``v = normalize(embedding(backbone(x)))``; NCE of ``v`` against its own bank entry and ``m`` random ones
    (``num_negatives``, when given, sets the bank's ``negatives``)."""

    def __init__(
        self,
        backbone: nn.Module,
        embedding: nn.Module,
        memory_bank: MemoryBank,
        loss: NCELoss,
        *,
        num_negatives: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.embedding = embedding
        self.memory_bank = memory_bank
        if num_negatives is not None:
            memory_bank.negatives = num_negatives
        self.loss = loss

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:
        if len(batch.views) != 1:
            raise SslcoreError(
                f"instdisc trains on one view per image, the batch has {len(batch.views)}",
                hint="use a view transform with num_views = 1 (e.g. mocov1, the official augmentation)",
            )
        features = F.normalize(self.embedding(self.backbone(batch.views[0])).float(), dim=1)
        # NCEAverage.forward: positives and negatives are read from the bank before this batch changes it.
        loss = self.loss(features, self.memory_bank.read(features, index=batch.index))
        # NCEFunction.backward: v <- normalize(m v + (1 - m) f) with the features of this forward pass. The engine
        # writes it after the optimizer step, which reads nothing from the bank: the same bank as the official one.
        write = KeyWrite(self.memory_bank, features.detach(), index=batch.index)
        return MethodOutput(loss, {"nce_normalizer": self.loss.normalizer.detach()}, [write])

    def head_network(self) -> nn.Module:
        """Backbone and embedding: the 128-d features lemniscate's test.py kNN scores (normalised by the monitor)."""
        return nn.Sequential(self.backbone, self.embedding)


def build_instdisc(config: InstDiscConfig, parts: MethodParts) -> InstDisc:
    """InstDisc: one view, 128-d unit features, NCE against a momentum-updated memory bank."""
    backbone = parts.backbone()
    embedding = parts.head("embedding", in_dim=backbone.num_features)
    memory_bank = parts.key_store(embedding.out_dim)
    if not isinstance(memory_bank, MemoryBank):
        raise SslcoreError(
            f"instdisc needs a memory bank, got {type(memory_bank).__name__}",
            hint='set [key_store] kind = "memory_bank": InstDisc keeps one feature per training image',
        )
    loss = parts.loss()
    if not isinstance(loss, NCELoss):
        raise SslcoreError(
            f"instdisc scores features with noise-contrastive estimation, got loss {type(loss).__name__}",
            hint='set [loss] kind = "nce"',
        )
    return InstDisc(backbone, embedding, memory_bank, loss, num_negatives=config.num_negatives)
