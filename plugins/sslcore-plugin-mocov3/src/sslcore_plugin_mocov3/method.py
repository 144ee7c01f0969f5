"""MoCo v3 (Chen, Xie and He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers", Alg. 1).

No queue: the keys are the momentum encoder's outputs for the current GLOBAL batch (``concat_all_gather``,
without gradient). A backbone + projector ``f_q`` followed by a predictor makes the queries; the momentum
encoder ``f_k`` is an exponential moving average of ``f_q`` (backbone + projector, not the predictor). The loss
is symmetric, ``ctr(q1, k2) + ctr(q2, k1)``, each term InfoNCE scaled by ``2 * tau`` (the ``mocov3_contrastive``
loss).

One step follows the official ``moco/builder.py`` ``MoCo.forward``: the queries of both views, then (under
``no_grad``) the momentum update with this step's momentum, BEFORE the keys are computed, then the keys of
both views. The momentum is ``m = 1 - (1 - m0) * (cos(pi * k / K) + 1) / 2`` at optimizer step k of K
(``main_moco.py`` ``adjust_moco_momentum`` evaluated at the fractional epoch ``epoch + i / iters_per_epoch``):
the ``ema`` target updater with ``schedule = "cosine"``. Each view goes through each network on its own, so
BatchNorm statistics are per view, as in the official code. ``forward`` is therefore a training step; nothing
is left for ``after_optimizer_step``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from sslcore.components.key_stores import KeyStore
from sslcore.components.target_updaters import EMAUpdater, TargetUpdater
from sslcore.errors import SslcoreError
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo


@attrs.frozen(kw_only=True)
class MoCoV3Config:
    """The ``mocov3`` method has no options of its own. Its parts are the ``[backbone]``,
    ``[heads.projector]``, ``[heads.predictor]``, ``[key_store]`` (``in_batch``, ``stop_gradient = true``),
    ``[target_updater]`` (``ema``, cosine from 0.99 to 1) and ``[loss]`` (``mocov3_contrastive``) tables."""


class Encoder(nn.Module):
    """A backbone followed by a projector: MoCo v3's ``base_encoder`` / ``momentum_encoder``."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class MoCoV3(Method):
    """MoCo v3: ``encoder`` (backbone + projector), ``predictor``, ``momentum_encoder`` (EMA of ``encoder``).

    ``key_store`` is an in-batch key store (``gather(keys) -> (global keys, offset of this rank)``) and
    ``loss(q, k_all, offset)`` the MoCo v3 contrastive loss. ``views[0]`` and ``views[1]`` are x1 and x2.
    """

    def __init__(
        self,
        *,
        encoder: Encoder,
        predictor: nn.Module,
        target_updater: TargetUpdater,
        key_store: KeyStore,
        loss: nn.Module,
    ) -> None:
        super().__init__()
        if getattr(key_store, "sharding", None) != "in_batch" or not callable(getattr(key_store, "gather", None)):
            raise SslcoreError(
                f"MoCo v3 takes its keys from the global batch, got key store {type(key_store).__name__} "
                f"with sharding {getattr(key_store, 'sharding', None)!r}",
                hint="use [key_store] kind = \"in_batch\" with stop_gradient = true",
            )
        self.encoder = encoder
        self.predictor = predictor
        self.target_updater = target_updater
        self.momentum_encoder = target_updater.make_target(encoder)
        self.key_store = key_store
        self.loss = loss

    @property
    def backbone(self) -> nn.Module:  # type: ignore[override]
        return self.encoder.backbone

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:  # type: ignore[override]
        if len(batch.views) != 2:
            raise SslcoreError(
                f"MoCo v3 takes two views per image, got {len(batch.views)}",
                hint="use views with two crops (e.g. kind = \"byol\")",
            )
        x1, x2 = batch.views
        q1 = self.predictor(self.encoder(x1))
        q2 = self.predictor(self.encoder(x2))
        with torch.no_grad():
            self.target_updater.update(self.encoder, self.momentum_encoder, step.step)
            k1, offset = self.key_store.gather(self.momentum_encoder(x1))
            k2, _ = self.key_store.gather(self.momentum_encoder(x2))
        loss = self.loss(q1, k2, offset) + self.loss(q2, k1, offset)
        logs = {}
        if isinstance(self.target_updater, EMAUpdater):
            logs["momentum"] = self.target_updater.momentum(step.step)
        return MethodOutput(loss, logs)

    # The target updater's own state (none for the built-in ones) travels with the method's state dict.
    def get_extra_state(self) -> dict[str, Any]:
        return {"target_updater": self.target_updater.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.target_updater.load_state_dict(state["target_updater"])


def build_mocov3(config: MoCoV3Config, parts: MethodParts) -> MoCoV3:
    """MoCo v3: momentum encoder, predictor, symmetric contrastive loss over the global batch."""
    backbone = parts.backbone()
    projector = parts.head("projector", backbone.num_features)
    predictor = parts.head("predictor", projector.out_dim)
    if predictor.out_dim != projector.out_dim:
        raise SslcoreError(
            f"MoCo v3 compares predictions with momentum projections, but the predictor gives {predictor.out_dim} "
            f"dimensions and the projector {projector.out_dim}",
            hint="set [heads.predictor] out_dim to the projector's out_dim",
        )
    return MoCoV3(
        encoder=Encoder(backbone, projector),
        predictor=predictor,
        target_updater=parts.target_updater(),
        key_store=parts.key_store(projector.out_dim),
        loss=parts.loss(),
    )
