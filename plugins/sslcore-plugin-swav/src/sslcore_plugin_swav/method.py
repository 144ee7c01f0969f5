"""SwAV (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments").

Features of several crops of an image are compared through their assignments ("codes") to a set of learnable
prototypes: the code of one crop is predicted from every other crop (the "swapped" prediction, sec. 3.1, Eq. 1-3).
Codes are computed online by the Sinkhorn-Knopp algorithm under an equipartition constraint over the batch
(sec. 3.1, Eq. 3; Alg. 1), only for the global crops; the small local crops of multi-crop (sec. 3.2) only predict.

One training step, in the order of the official ``main_swav.py`` ``train``:

1. L2-normalize the prototypes under ``no_grad`` (before the forward pass);
2. multi-crop forward: backbone per resolution group, projection head over all crops, L2 normalization,
   prototype scores (``src/resnet50.py``);
3. for each crop in ``crops_for_assign`` (the two global crops), under ``no_grad``: its scores, with the scores
   of this crop's queue prepended once the queue is full; Sinkhorn codes of the batch (the last rows); the queue
   receives the crop's embeddings (a key-store write the engine applies after the optimizer step: each queue is
   read only for its own crop's codes, before, so the official in-loop refill gives the same numbers);
4. loss: for each of those crops, ``-mean(sum(q * log_softmax(scores_v / T)))`` over every OTHER crop ``v``,
   averaged over the ``V - 1`` other crops, then over the assigned crops;
5. after backward, the prototypes' gradients are dropped during the first ``freeze_prototypes_niters``
   iterations (:meth:`SwAV.before_optimizer_step`), so the optimizer leaves them untouched.

Steps 1-4 happen in :meth:`SwAV.forward` (which normalizes the prototypes in place).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.key_stores import KeyStore
from sslcore.components.losses import sinkhorn_knopp
from sslcore.components.multicrop import multicrop_forward
from sslcore.errors import SslcoreError
from sslcore.method import Batch, KeyWrite, Method, MethodOutput, MethodParts, StepInfo
from sslcore_plugin_swav.config import SwAVConfig


class SwAV(Method):
    """SwAV: ``backbone`` -> ``projector`` -> L2 normalization -> ``prototypes`` (scores), Sinkhorn codes,
    swapped prediction with ``loss(codes, scores)`` (``soft_cross_entropy``, T = 0.1).

    ``prototypes`` is the ``prototypes`` head (a bias-free Linear with ``normalize_()``). ``queues`` is empty,
    or holds one per-rank (``sharded``) FIFO per entry of ``crops_for_assign``, with ``read``, ``write``,
    ``filled`` and ``capacity`` (the ``queue`` key store); SwAV's ``--queue_length`` is the total over ranks,
    each rank keeping its own embeddings, as the official per-rank ``queue{rank}.pth``.
    """

    def __init__(
        self,
        config: SwAVConfig,
        *,
        backbone: nn.Module,
        projector: nn.Module,
        prototypes: nn.Module,
        loss: nn.Module,
        queues: Sequence[KeyStore] = (),
    ) -> None:
        super().__init__()
        if not callable(getattr(prototypes, "normalize_", None)) or not isinstance(
            getattr(prototypes, "weight", None), torch.Tensor
        ):
            raise SslcoreError(
                f"SwAV needs a prototypes layer with a weight and normalize_(), got {type(prototypes).__name__}",
                hint='use [heads.prototypes] kind = "prototypes"',
            )
        if queues and len(queues) != len(config.crops_for_assign):
            raise SslcoreError(
                f"SwAV keeps one queue per assigned crop: {len(config.crops_for_assign)} for crops_for_assign = "
                f"{list(config.crops_for_assign)}, got {len(queues)}"
            )
        for queue in queues:
            _check_queue(queue)
        self.config = config
        self.backbone = backbone
        self.projector = projector
        self.prototypes = prototypes
        self.loss = loss
        self.queues = nn.ModuleList(queues)

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:  # type: ignore[override]
        views = batch.views
        self._check_views(views)
        crops, b = len(views), views[0].shape[0]
        self.prototypes.normalize_()  # main_swav.py: "normalize the prototypes", under no_grad, before the forward
        embedding = F.normalize(self.projector(multicrop_forward(self.backbone, views)), dim=1, p=2)
        scores = self.prototypes(embedding)
        fill_queues = len(self.queues) > 0 and step.epoch >= self.config.epoch_queue_starts
        if fill_queues:
            self._check_queue_size(b)
        # The queues are read as they were before this step (official: the "full" check precedes the refill).
        use_queues = fill_queues and all(queue.filled == queue.capacity for queue in self.queues)
        loss: torch.Tensor | float = 0.0
        writes = []
        for i, crop in enumerate(self.config.crops_for_assign):
            rows = slice(crop * b, (crop + 1) * b)
            codes = self.codes(scores[rows].detach(), self.queues[i] if use_queues else None)
            if fill_queues:
                writes.append(KeyWrite(self.queues[i], embedding[rows].detach()))
            others = [self.loss(codes, scores[o * b : (o + 1) * b]) for o in range(crops) if o != crop]
            loss = loss + sum(others) / (crops - 1)
        loss = loss / len(self.config.crops_for_assign)
        return MethodOutput(loss, {"queue_in_use": float(use_queues)} if len(self.queues) else {}, writes)

    @torch.no_grad()
    def codes(self, scores: torch.Tensor, queue: KeyStore | None = None) -> torch.Tensor:
        """Sinkhorn codes ``(B, K)`` of this rank's samples from their prototype scores ``(B, K)``.

        With ``queue``, the scores of its embeddings against the current prototypes are prepended as extra
        samples of the equipartition, and the codes of the batch (the last rows) are returned
        (``main_swav.py``: ``torch.cat((torch.mm(queue[i], prototypes.weight.t()), out))``, ``[-bs:]``).
        A collective over ranks: every rank calls it with the same shapes.
        """
        batch = scores.shape[0]
        if queue is not None:
            stored = queue.read(scores.new_zeros(0, queue.dim)).bank  # its embeddings only: no queries of its own
            scores = torch.cat([self.prototypes(stored).to(scores.dtype), scores])
        return sinkhorn_knopp(scores, self.config.epsilon, self.config.sinkhorn_iterations)[-batch:]

    def before_optimizer_step(self, step: StepInfo) -> None:
        """Drop the prototypes' gradients during the first ``freeze_prototypes_niters`` steps (``main_swav.py``:
        ``p.grad = None`` for the prototypes while ``iteration < freeze_prototypes_niters``)."""
        if step.step < self.config.freeze_prototypes_niters:
            for parameter in self.prototypes.parameters():
                parameter.grad = None

    def _check_views(self, views: Sequence[torch.Tensor]) -> None:
        assign = self.config.crops_for_assign
        if len(views) < 2:
            raise SslcoreError(
                f"SwAV predicts the codes of one view from the others and needs at least 2 views, got {len(views)}",
                hint='use views kind = "multicrop" (2 global + 6 local crops in the paper)',
            )
        if max(assign) >= len(views):
            raise SslcoreError(
                f"crops_for_assign = {list(assign)} names view {max(assign)}, but the batch has {len(views)} views",
                hint="use indices of the global crops, which come first (e.g. [0, 1])",
            )
        sizes = {view.shape[0] for view in views}
        if len(sizes) != 1:
            raise SslcoreError(f"every SwAV view needs the same batch size, got {sorted(sizes)}")

    def _check_queue_size(self, batch: int) -> None:
        capacity = self.queues[0].capacity
        if capacity % batch:
            raise SslcoreError(
                f"SwAV's queue holds {capacity} embeddings per process, not a multiple of the {batch} samples of "
                "each process's batch",
                hint="make key_store.size a multiple of run.batch_size (the official main_swav.py rounds "
                f"queue_length down to one: here {capacity - capacity % batch} per process)",
            )


def _check_queue(queue: KeyStore) -> None:
    if getattr(queue, "sharding", None) != "sharded" or not (hasattr(queue, "filled") and hasattr(queue, "capacity")):
        raise SslcoreError(
            f"SwAV's queue keeps each process's own embeddings (a sharded FIFO with filled and capacity), got "
            f"{type(queue).__name__} with sharding {getattr(queue, 'sharding', None)!r}",
            hint='use [key_store] kind = "queue" with sharding = "sharded", or no [key_store] for no queue',
        )


def build_swav(config: SwAVConfig, parts: MethodParts) -> SwAV:
    """SwAV: multi-crop, projector, L2-normalized prototypes, Sinkhorn codes, swapped prediction, optional queue."""
    backbone = parts.backbone()
    projector = parts.head("projector", backbone.num_features)
    prototypes = parts.head("prototypes", projector.out_dim)
    queues = (
        [parts.key_store(projector.out_dim) for _ in config.crops_for_assign] if parts.has("key_store") else []
    )
    return SwAV(config, backbone=backbone, projector=projector, prototypes=prototypes, loss=parts.loss(),
                queues=queues)
