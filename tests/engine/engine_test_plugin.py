"""A small method plugin for engine tests, independent of the method plugins in plugins/.

``pairwise``: two views, backbone + projector; with an ``in_batch`` key store and ``ntxent`` it is SimCLR, with a
``queue`` key store, an ``ema`` target and ``infonce`` it is MoCo. ``nan_at_step`` makes the loss NaN at that step
(1-based), to test the engine's non-finite-loss stop.
"""

from __future__ import annotations

import attrs
import torch

from sslcore import Method, MethodOutput, hookimpl


@attrs.frozen(kw_only=True)
class PairwiseConfig:
    nan_at_step: int | None = None


class Pairwise(Method):
    def __init__(self, config: PairwiseConfig, parts) -> None:
        super().__init__()
        self.config = config
        self.backbone = parts.backbone()
        self.projector = parts.head("projector", self.backbone.num_features)
        self.keys = parts.key_store(self.projector.out_dim)
        self.loss_fn = parts.loss()
        self.updater = parts.target_updater() if parts.has("target_updater") else None
        if self.updater is not None:
            self.target = self.updater.make_target(torch.nn.Sequential(self.backbone, self.projector))

    def forward(self, batch, step):
        query = self.projector(self.backbone(batch.views[0]))
        if self.updater is None:
            other = self.projector(self.backbone(batch.views[1]))
            all_q, offset = self.keys.gather(query)
            all_o, _ = self.keys.gather(other)
            loss = self.loss_fn(query, other, all_q, all_o, offset)
        else:
            with torch.no_grad():
                key = torch.nn.functional.normalize(self.target(batch.views[1]), dim=1)
            loss = self.loss_fn(query, key, self.keys.keys())
            self._pending = key
        if self.config.nan_at_step is not None and step.step + 1 == self.config.nan_at_step:
            loss = loss * float("nan")
        return MethodOutput(loss, {"logit_scale": 1.0})

    def after_optimizer_step(self, step):
        if self.updater is not None:
            self.updater.update(torch.nn.Sequential(self.backbone, self.projector), self.target, step.step)
            self.keys.enqueue(self._pending)


@hookimpl
def sslcore_register_methods(registry):
    registry.add("pairwise", lambda config, parts: Pairwise(config, parts), PairwiseConfig,
                 description="SimCLR- or MoCo-shaped test method")
