"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", sec. 3.1-3.2).

The online network (backbone ``f_theta``, projector ``g_theta``, predictor ``q_theta``) predicts the target
network's projection (``f_xi``, ``g_xi``) of the other view. The target is an exponential moving average of the
online backbone and projector, ``xi <- tau xi + (1 - tau) theta`` after every optimizer step, with ``tau`` raised
from ``tau_base`` to 1 along a cosine (sec. 3.2): the recipe's ``ema`` target updater. The loss is the normalized
MSE ``2 - 2 cos(q_theta(z), z'_xi)`` symmetrised over both view orders, ``L + L~`` (Eq. 2).

As the official code (deepmind-research ``byol/byol_experiment.py``): each view goes through each network
separately (BatchNorm statistics per view), the target runs in training mode (batch statistics, its own running
statistics: ``target_state``) without gradient, and the loss is the sum of the two directions' batch means.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs
import torch
from torch import nn

from sslcore.components.target_updaters import TargetUpdater
from sslcore.errors import SslcoreError
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo


@attrs.frozen(kw_only=True)
class BYOLConfig:
    """The ``byol`` method has no options of its own. Its recipe tables: ``[backbone]``, ``[heads.projector]``,
    ``[heads.predictor]`` (its input width is the projector's output), ``[target_updater]`` (``ema`` with a cosine
    schedule for BYOL) and ``[loss]`` (``normalized_mse``, called as ``loss(prediction, target_projection)``)."""


class BYOL(Method):
    """:attr:`online` = backbone + projector, :attr:`predictor`, and :attr:`target` made by the target updater
    from the online network (for ``ema``: a copy that follows it)."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, predictor: nn.Module, updater: TargetUpdater,
                 loss: nn.Module) -> None:
        super().__init__()
        if predictor.out_dim != projector.out_dim:
            raise SslcoreError(
                f"the predictor's output width ({predictor.out_dim}) must equal the projector's ({projector.out_dim}): "
                "it predicts the target's projection",
                hint="set heads.predictor.out_dim to heads.projector.out_dim",
            )
        self.online = nn.Sequential(OrderedDict(backbone=backbone, projector=projector))
        self.predictor = predictor
        self.target = updater.make_target(self.online)
        self.updater = updater
        self.loss = loss

    @property
    def backbone(self) -> nn.Module:  # type: ignore[override]
        """The online backbone ``f_theta`` (evaluated and exported)."""
        return self.online.backbone

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:
        x1, x2 = _two_views(batch)
        p1, p2 = self.predictor(self.online(x1)), self.predictor(self.online(x2))
        with torch.no_grad():
            t1, t2 = self.target(x1), self.target(x2)
        # Eq. 2: L (view 1 predicts view 2's target projection) + L~ (the views swapped).
        return MethodOutput(self.loss(p1, t2) + self.loss(p2, t1))

    def after_optimizer_step(self, step: StepInfo) -> None:
        self.updater.update(self.online, self.target, step.step)


def _two_views(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    if len(batch.views) != 2:
        raise SslcoreError(
            f"byol trains on exactly 2 views per image, the batch has {len(batch.views)}",
            hint='use [views] kind = "byol" (its asymmetric pair)',
        )
    return batch.views[0], batch.views[1]


def build_byol(config: BYOLConfig, parts: MethodParts) -> BYOL:
    """BYOL: online network with predictor regressing an EMA target network's projection of the other view."""
    backbone = parts.backbone()
    projector = parts.head("projector", in_dim=backbone.num_features)
    predictor = parts.head("predictor", in_dim=projector.out_dim)
    return BYOL(backbone, projector, predictor, parts.target_updater(), parts.loss())
