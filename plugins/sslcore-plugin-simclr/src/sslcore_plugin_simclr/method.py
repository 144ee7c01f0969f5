"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations", Alg. 1) and
SimCLR v2 (Chen et al. 2020b, "Big Self-Supervised Models are Strong Semi-Supervised Learners", sec. 2.1-2.2).

One encoder ``f`` (backbone) and projection head ``g`` for both views; NT-Xent (Eq. 1) where each of the 2N views
of the global batch has its other view as positive and the remaining 2N-2 views as negatives. As in the official
code (google-research/simclr ``model.py``: the views split off the channels, then ``tf.concat(features_list, 0)``)
the two views go through the network as one batch of 2N, so BatchNorm normalises over both views; with several
processes, the engine's SyncBatchNorm gives the paper's "global BN" (SimCLR sec. 2.2) and the ``in_batch`` key store
gathers the projections of every rank WITH gradient (``tpu_cross_replica_concat`` in ``objective.py``).

v1 and v2 differ by recipe only: v2 has a 3-layer projection head and fine-tunes from its first layer, which this
method exposes as :meth:`SimCLR.evaluation_network` (option ``eval_from_projector_layer``).
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from sslcore.components.heads import MLPHead
from sslcore.components.key_stores import InBatchKeys
from sslcore.errors import SslcoreError
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo


@attrs.frozen(kw_only=True)
class SimCLRConfig:
    """The ``simclr`` method (recipe tables it uses: ``[backbone]``, ``[heads.projector]``, ``[key_store]``
    (``in_batch``, with gradient) and ``[loss]`` (``ntxent``, called as ``loss(z1, z2, all_z1, all_z2, offset)``)).

    Fields:
        eval_from_projector_layer: how many blocks of the projection head (Linear -> BatchNorm -> ReLU) sit on
            top of the backbone in :meth:`SimCLR.evaluation_network`, the network to fine-tune or evaluate.
            0: the backbone alone (SimCLR v1, which discards the head). 1: the backbone and the head's first
            layer, from which SimCLR v2 fine-tunes (sec. 2.2; official ``--ft_proj_selector=1``). Must be
            smaller than the projection head's number of layers.
    """

    eval_from_projector_layer: int = attrs.field(default=0, validator=attrs.validators.ge(0))


class SimCLR(Method):
    """``f`` = :attr:`backbone`, ``g`` = :attr:`projector`; the loss of this process's N local samples against
    the global batch of every process."""

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        key_store: InBatchKeys,
        loss: nn.Module,
        *,
        eval_from_projector_layer: int = 0,
    ) -> None:
        super().__init__()
        if eval_from_projector_layer > 0:
            layers = len(projector.layers) if isinstance(projector, MLPHead) else 0
            if eval_from_projector_layer >= layers:
                raise SslcoreError(
                    f"eval_from_projector_layer = {eval_from_projector_layer} needs an `mlp` projection head with "
                    f"more layers, got {type(projector).__name__} with {layers}",
                    hint="SimCLR v2 uses 1 with a 3-layer head (heads.projector.num_layers = 3)",
                )
        self.backbone = backbone
        self.projector = projector
        self.key_store = key_store
        self.loss = loss
        self.eval_from_projector_layer = eval_from_projector_layer

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:
        x1, x2 = _two_views(batch, "simclr")
        # One pass over [view 1; view 2] (official model.py): BatchNorm statistics over all 2N views.
        z1, z2 = self.projector(self.backbone(torch.cat([x1, x2]))).chunk(2)
        all_z1, offset = self.key_store.gather(z1)
        all_z2, _ = self.key_store.gather(z2)
        return MethodOutput(self.loss(z1, z2, all_z1, all_z2, offset))

    def evaluation_network(self) -> nn.Module:
        """The backbone followed by the first ``eval_from_projector_layer`` projection-head blocks (shared
        weights, not a copy): the representation SimCLR v2 fine-tunes; the backbone alone for v1."""
        if self.eval_from_projector_layer == 0:
            return self.backbone
        return nn.Sequential(self.backbone, *self.projector.layers[: self.eval_from_projector_layer])


def _two_views(batch: Batch, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's two views; a clear error for any other number of views or mismatched shapes."""
    if len(batch.views) != 2:
        raise SslcoreError(
            f"{method} trains on exactly 2 views per image, the batch has {len(batch.views)}",
            hint="use a view transform with num_views = 2",
        )
    x1, x2 = batch.views
    if x1.shape != x2.shape:
        raise SslcoreError(
            f"{method} needs both views of the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}",
            hint="give both views the same size",
        )
    return x1, x2


def build_simclr(config: SimCLRConfig, parts: MethodParts) -> SimCLR:
    """SimCLR v1 / v2: one encoder and projection head, NT-Xent over the global batch of both views."""
    backbone = parts.backbone()
    projector = parts.head("projector", in_dim=backbone.num_features)
    key_store = parts.key_store(projector.out_dim)
    if not isinstance(key_store, InBatchKeys) or key_store.stop_gradient:
        raise SslcoreError(
            f"simclr needs in-batch keys with gradient, got {key_store!r}",
            hint='set [key_store] kind = "in_batch" with stop_gradient = false: SimCLR contrasts the current '
            "batch and backpropagates through every view, the gathered ones included",
        )
    return SimCLR(
        backbone, projector, key_store, parts.loss(), eval_from_projector_layer=config.eval_from_projector_layer
    )
