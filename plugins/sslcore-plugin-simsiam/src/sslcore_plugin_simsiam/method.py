"""SimSiam (Chen and He 2021, "Exploring Simple Siamese Representation Learning", Alg. 1).

An encoder ``f`` (backbone + projection MLP) and a prediction MLP ``h``; for views ``x1, x2``:
``z = f(x)``, ``p = h(z)``, loss ``D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2`` (Eq. 4) with the negative
cosine ``D`` (Eq. 1). The target branch is the ``stop_grad`` target updater: the encoder itself without gradient.
As the official code (facebookresearch/simsiam ``simsiam/builder.py`` returns ``z1.detach(), z2.detach()``),
that target's output is the encoder's output of the same forward pass, detached: no second forward, and the
BatchNorm statistics are updated once per view. Each view goes through the encoder separately.

Any other target updater (e.g. ``ema``) makes a separate target network that runs on both views without gradient,
the "SimSiam with a momentum encoder" of the paper's relation to BYOL (sec. 6.2).
"""

from __future__ import annotations

from collections import OrderedDict

import attrs
import torch
from torch import nn

from sslcore.components.target_updaters import StopGradient, TargetUpdater
from sslcore.errors import SslcoreError
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo


@attrs.frozen(kw_only=True)
class SimSiamConfig:
    """The ``simsiam`` method has no options of its own. Its recipe tables: ``[backbone]``, ``[heads.projector]``,
    ``[heads.predictor]`` (input and output width: the projector's output), ``[target_updater]`` (``stop_grad``)
    and ``[loss]`` (``negative_cosine``, called as ``loss(p, z)`` with ``z`` already without gradient)."""


class SimSiam(Method):
    """:attr:`encoder` = backbone + projector (``f``), :attr:`predictor` (``h``), :attr:`target` from the updater."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, predictor: nn.Module, updater: TargetUpdater,
                 loss: nn.Module) -> None:
        super().__init__()
        if predictor.out_dim != projector.out_dim:
            raise SslcoreError(
                f"the predictor's output width ({predictor.out_dim}) must equal the projector's ({projector.out_dim}): "
                "p1 is compared with z2",
                hint="set heads.predictor.out_dim to heads.projector.out_dim",
            )
        self.encoder = nn.Sequential(OrderedDict(backbone=backbone, projector=projector))
        self.predictor = predictor
        self.target = updater.make_target(self.encoder)
        self.updater = updater
        self.loss = loss

    @property
    def backbone(self) -> nn.Module:  # type: ignore[override]
        """The encoder's backbone (evaluated and exported)."""
        return self.encoder.backbone

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:
        x1, x2 = _two_views(batch)
        z1, z2 = self.encoder(x1), self.encoder(x2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = self._targets(x1, x2, z1, z2)
        return MethodOutput(0.5 * self.loss(p1, t2) + 0.5 * self.loss(p2, t1))

    def _targets(
        self, x1: torch.Tensor, x2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.target, StopGradient) and self.target.online is self.encoder:
            return z1.detach(), z2.detach()  # stopgrad(f(x)): the same forward, without gradient
        with torch.no_grad():
            return self.target(x1), self.target(x2)

    def after_optimizer_step(self, step: StepInfo) -> None:
        self.updater.update(self.encoder, self.target, step.step)


def _two_views(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    if len(batch.views) != 2:
        raise SslcoreError(
            f"simsiam trains on exactly 2 views per image, the batch has {len(batch.views)}",
            hint="use a view transform with num_views = 2",
        )
    return batch.views[0], batch.views[1]


def build_simsiam(config: SimSiamConfig, parts: MethodParts) -> SimSiam:
    """SimSiam: encoder and predictor, negative cosine to the stop-gradient encoder output of the other view."""
    backbone = parts.backbone()
    projector = parts.head("projector", in_dim=backbone.num_features)
    predictor = parts.head("predictor", in_dim=projector.out_dim)
    return SimSiam(backbone, projector, predictor, parts.target_updater(), parts.loss())
