"""A small method plugin for engine tests, independent of the method plugins in plugins/.

``pairwise``: two views, backbone + projector; with an ``in_batch`` key store and ``ntxent`` it is SimCLR, with a
``queue`` key store, an ``ema`` target (moved by the engine after the step) and ``infonce`` it is MoCo.
``nan_at_step`` makes the loss NaN at that step (1-based), to test the engine's non-finite-loss stop.

``counting``: a target updater with state (the steps it was called with), to test that the engine checkpoints it.
"""

from __future__ import annotations

import attrs
import torch

from sslcore import Method, MethodOutput, hookimpl
from sslcore.components.target_updaters import EMAConfig, EMAUpdater, StopGradient
from sslcore.method import KeyWrite


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
        self.target = None
        if parts.has("target_updater"):
            online = torch.nn.Sequential(self.backbone, self.projector)
            self.target = self.follow(online, parts.target_updater(), when="after_step")

    def forward(self, batch, step):
        query = self.projector(self.backbone(batch.views[0]))
        writes = []
        if self.target is None:  # SimCLR: each of the 2B embeddings against the other 2B - 1, its other view positive
            both = torch.cat([query, self.projector(self.backbone(batch.views[1]))])
            rows = torch.arange(both.shape[0], device=both.device)
            loss = self.loss_fn(both, self.keys.read(both, positive_rows=rows.roll(query.shape[0]), exclude_rows=rows))
        else:  # MoCo: the target's keys are the positives, the queue the negatives; the keys are enqueued
            with torch.no_grad():
                key = torch.nn.functional.normalize(self.target(batch.views[1]), dim=1)
            loss = self.loss_fn(query, self.keys.read(key))
            writes.append(KeyWrite(self.keys, key))
        if self.config.nan_at_step is not None and step.step + 1 == self.config.nan_at_step:
            loss = loss * float("nan")
        return MethodOutput(loss, {"logit_scale": 1.0}, writes)


@hookimpl
def sslcore_register_methods(registry):
    registry.add("pairwise", lambda config, parts: Pairwise(config, parts), PairwiseConfig,
                 description="SimCLR- or MoCo-shaped test method")


@attrs.frozen(kw_only=True)
class CountingConfig(EMAConfig):
    """The ``ema`` options, and ``stop_grad``: the target is the online network with the gradient stopped."""

    stop_grad: bool = False


class CountingUpdater(EMAUpdater):
    """An ``ema`` (or ``stop_grad``) target updater with state: the steps it was called with, in order."""

    def __init__(self, config: CountingConfig, total_steps: int) -> None:
        super().__init__(base_momentum=config.base_momentum, schedule=config.schedule,
                         final_momentum=config.final_momentum, buffers=config.buffers, total_steps=total_steps)
        self.stop_grad = config.stop_grad
        self.steps: list[int] = []

    def make_target(self, online):
        return StopGradient(online) if self.stop_grad else super().make_target(online)

    def update(self, online, target, step):
        self.steps.append(step)
        if not self.stop_grad:
            super().update(online, target, step)

    def state_dict(self):
        return {"steps": list(self.steps)}

    def load_state_dict(self, state):
        self.steps = list(state["steps"])


@hookimpl
def sslcore_register_target_updaters(registry):
    registry.add("counting", CountingUpdater, CountingConfig, description="ema or stop_grad, counting its updates")
