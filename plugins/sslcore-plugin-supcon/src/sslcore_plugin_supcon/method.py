"""SupCon (Khosla et al. 2020, "Supervised Contrastive Learning"): the L^sup_out loss (Eq. 2) on labelled data.

Every view of every image of the global batch is an anchor; its positives are all other views of all images with
the same label, its contrast set every other view of the global batch. Following the official
HobbitLong/SupContrast ``main_supcon.py``: all views go through the network as one batch (``torch.cat`` of the
crops, so BatchNorm normalises over every view), ``SupConResNet`` projects the encoder output with a
Linear-ReLU-Linear head (``head='mlp'``: dim_in -> dim_in -> 128) and L2-normalises it, and ``losses.py``
``SupConLoss`` (the ``supcon`` loss, contrast_mode 'all') scores it. The official code is single-process
(``DataParallel``); here the contrast set is the global batch of all processes, gathered with gradient by the
``in_batch`` key store, so N processes with batch B train as one process with batch N*B.

Extension (not in the paper or the official code): with a ``queue`` key store that keeps labels, the contrast set
also holds the projections of the last K views of earlier batches with their labels, as positives and negatives
(a cross-batch memory in the spirit of the authors' released ImageNet model, which used "the trick of the momentum
encoder"; here the stored keys come from the online network itself, detached, with no momentum encoder).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from sslcore import distributed
from sslcore.components.key_stores import InBatchKeys, Queue
from sslcore.components.losses import SupConLoss
from sslcore.errors import SslcoreError
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo


@attrs.frozen(kw_only=True)
class SupConMethodConfig:
    """The ``supcon`` method has no options of its own. Recipe tables it uses: ``[backbone]``,
    ``[heads.projector]`` (SupConResNet's 'mlp' head: ``kind = "mlp"``, ``num_layers = 2``, ``hidden_dim`` = the
    backbone width, ``out_dim = 128``), ``[loss]`` (``supcon``) and ``[key_store]``: ``in_batch`` with
    ``stop_gradient = false`` (the paper: the global batch, every view backpropagated), or ``queue`` with
    ``store_labels = true`` (the extension: the global batch plus labelled keys of earlier batches)."""


class SupCon(Method):
    """``z = normalize(projector(backbone(x)))`` for every view; L^sup_out of this process's anchors against
    the global batch (and the queue's labelled keys, with a queue)."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, key_store: InBatchKeys | Queue, loss: SupConLoss):
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.key_store = key_store
        self.loss = loss

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:
        if batch.label is None:
            raise SslcoreError(
                "supcon is supervised: it needs class labels and this dataset has none",
                hint="train on a labelled dataset (e.g. labels = true in [data], with a label column)",
            )
        shapes = {tuple(view.shape) for view in batch.views}
        if len(shapes) != 1:
            raise SslcoreError(
                f"supcon passes all views through the network as one batch, so they need one shape, got {shapes}",
                hint="give every view the same size",
            )
        views, images = len(batch.views), batch.views[0].shape[0]
        z = F.normalize(self.projector(self.backbone(torch.cat(batch.views))).float(), dim=1)
        features = z.view(views, images, -1).transpose(0, 1)  # (B, V, D), as main_supcon.py's features.view
        labels = batch.label
        all_labels = distributed.gather(labels)
        queue_features = queue_labels = None
        if isinstance(self.key_store, InBatchKeys):
            rows, offset = self.key_store.gather(features.reshape(images * views, -1))
            all_features, offset = rows.view(-1, views, features.shape[2]), offset // views
        else:
            all_features, offset = distributed.gather_with_grad(features), distributed.rank() * images
            stored = self.key_store.labels()
            filled = stored >= 0  # empty slots hold label -1
            queue_features, queue_labels = self.key_store.keys()[filled], stored[filled]
        loss = self.loss(features, labels, all_features, all_labels, offset, queue_features, queue_labels)
        if isinstance(self.key_store, Queue):
            self.key_store.enqueue(features.detach().reshape(images * views, -1), labels.repeat_interleave(views))
        return MethodOutput(loss)


def build_supcon(config: SupConMethodConfig, parts: MethodParts) -> SupCon:
    """SupCon: supervised contrastive learning over all views of the global batch (optionally plus a labelled queue)."""
    backbone = parts.backbone()
    projector = parts.head("projector", in_dim=backbone.num_features)
    key_store = parts.key_store(projector.out_dim)
    if isinstance(key_store, InBatchKeys):
        if key_store.stop_gradient:
            raise SslcoreError(
                "supcon backpropagates through every view of the contrast set, but the in_batch key store "
                "gathers without gradient",
                hint="set [key_store] stop_gradient = false",
            )
    elif isinstance(key_store, Queue):
        if key_store.queue_labels is None:
            raise SslcoreError(
                "supcon with a queue needs the label of every stored key to find its positives",
                hint="set [key_store] store_labels = true",
            )
    else:
        raise SslcoreError(
            f"supcon contrasts the global batch, got key store {type(key_store).__name__}",
            hint='set [key_store] kind = "in_batch" (the paper), or "queue" with store_labels = true (extension)',
        )
    loss = parts.loss()
    if not isinstance(loss, SupConLoss):
        raise SslcoreError(
            f"supcon needs the supervised contrastive loss, got {type(loss).__name__}",
            hint='set [loss] kind = "supcon"',
        )
    return SupCon(backbone, projector, key_store, loss)
