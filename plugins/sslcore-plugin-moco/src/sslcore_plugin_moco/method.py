"""MoCo v1 (He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning", Algorithm 1)
and MoCo v2 (Chen et al. 2020, "Improved Baselines with Momentum Contrastive Learning").

One method covers both; the versions differ only in component tables: v1 has a linear 128-d head, T = 0.07 and
the ``mocov1`` views; v2 a 2-layer MLP head (2048 hidden, ReLU), T = 0.2, the ``mocov2`` ("aug+") views and a
cosine learning rate.

One training step, in the order of the official ``moco/builder.py`` ``MoCo.forward``:

1. momentum update of the key encoder with the current query encoder (``_momentum_update_key_encoder``,
   under ``no_grad``, BEFORE the keys are computed: the key encoder used at step t has absorbed the query
   encoder of step t; Algorithm 1 writes the same update after the optimizer step, which gives the same keys
   and losses at every step);
2. ``q = normalize(f_q(x_q))``; ``k = normalize(f_k(x_k))`` without gradient, through shuffling BN;
3. InfoNCE of q against its key and the queue (Eq. 1), the queue read before this step's keys join it;
4. enqueue this step's keys of all ranks (``_dequeue_and_enqueue`` gathers them first), after the loss.

All of it happens in :meth:`MoCo.forward`, so ``after_optimizer_step`` has nothing left to do. A consequence:
``forward`` is a training step (it moves the key encoder and the queue), as in the official code.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.key_stores import KeyStore
from sslcore.components.target_updaters import TargetUpdater
from sslcore.errors import SslcoreError
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo
from sslcore_plugin_moco.shuffle_bn import grouped_forward, shuffled_forward


@attrs.frozen(kw_only=True)
class MoCoConfig:
    """Options of the ``moco`` method (MoCo v1 and v2). The networks, queue, momentum and temperature are the
    ``[backbone]``, ``[heads.projector]``, ``[key_store]``, ``[target_updater]`` and ``[loss]`` tables.

    Fields:
        shuffle_bn: shuffling BN (sec. 3.3): the key encoder sees the global batch in a random order, split
            into BatchNorm groups, and its outputs are put back in order (official ``_batch_shuffle_ddp``).
            On one process with a single BatchNorm group the permutation cannot change the keys and is skipped.
        bn_group_size: samples per BatchNorm group, for the query and the key encoder alike (unset: each
            process's whole batch, as the official code, where a group is one GPU's batch: 32 samples for
            batch 256 on 8 GPUs). Set it to reproduce the official per-GPU statistics on any number of
            processes; it must divide each process's batch. Turn off the engine's SyncBatchNorm
            (``run.sync_batchnorm = false``): MoCo's BatchNorm is per group by design.
        symmetric: also contrast the second view's query with the first view's key and add the two losses,
            enqueueing both sets of keys (the official CIFAR-10 demo's ``--symmetric``; the paper's loss is
            asymmetric: off).
    """

    shuffle_bn: bool = True
    bn_group_size: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
    symmetric: bool = False


class Encoder(nn.Module):
    """A backbone followed by a head: MoCo's f_q / f_k (a ResNet whose ``fc`` is the projection head)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class MoCo(Method):
    """MoCo v1 / v2: query encoder ``encoder``, momentum key encoder ``key_encoder``, a replicated ``queue``.

    ``queue`` is any replicated key store with ``keys() -> (K, D)`` (detached) and ``enqueue(keys)`` (which
    gathers the keys of every rank): ``queue``, or a plugin's FIFO. ``loss(q, k, negatives)`` is InfoNCE
    (``infonce``). The view order is ``views[0]`` -> query, ``views[1]`` -> key.
    """

    def __init__(
        self,
        config: MoCoConfig,
        *,
        encoder: Encoder,
        target_updater: TargetUpdater,
        queue: KeyStore,
        loss: nn.Module,
    ) -> None:
        super().__init__()
        if getattr(queue, "sharding", None) != "replicated" or not all(
            callable(getattr(queue, name, None)) for name in ("keys", "enqueue")
        ):
            raise SslcoreError(
                f"MoCo needs a replicated queue of past keys (keys() and enqueue()), got {type(queue).__name__} "
                f"with sharding {getattr(queue, 'sharding', None)!r}",
                hint="use [key_store] kind = \"queue\" (sharding = \"replicated\")",
            )
        self.config = config
        self.encoder = encoder
        self.target_updater = target_updater
        self.key_encoder = target_updater.make_target(encoder)
        self.queue = queue
        self.loss = loss

    @property
    def backbone(self) -> nn.Module:  # type: ignore[override]
        return self.encoder.backbone

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:  # type: ignore[override]
        if len(batch.views) != 2:
            raise SslcoreError(
                f"MoCo takes two views per image (query, key), got {len(batch.views)}",
                hint="use views with num_views = 2 (e.g. kind = \"mocov2\")",
            )
        x1, x2 = batch.views
        with torch.no_grad():
            self.target_updater.update(self.encoder, self.key_encoder, step.step)
        if self.config.symmetric:
            # Official CIFAR-10 demo: loss_12 + loss_21, then enqueue cat([k1, k2]).
            loss_12, k2 = self._contrast(x1, x2)
            loss_21, k1 = self._contrast(x2, x1)
            loss, keys = loss_12 + loss_21, torch.cat([k1, k2])
        else:
            loss, keys = self._contrast(x1, x2)
        self.queue.enqueue(keys)
        return MethodOutput(loss)

    def _contrast(self, x_q: torch.Tensor, x_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """InfoNCE of the queries of ``x_q`` against the keys of ``x_k`` and the queue; returns (loss, keys)."""
        group = self.config.bn_group_size
        q = F.normalize(grouped_forward(self.encoder, x_q, group), dim=1)
        with torch.no_grad():
            forward = shuffled_forward if self.config.shuffle_bn else grouped_forward
            k = F.normalize(forward(self.key_encoder, x_k, group), dim=1)
        return self.loss(q, k, self.queue.keys()), k

    # The target updater's own state (none for the built-in ones) travels with the method's state dict.
    def get_extra_state(self) -> dict[str, Any]:
        return {"target_updater": self.target_updater.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.target_updater.load_state_dict(state["target_updater"])


def build_moco(config: MoCoConfig, parts: MethodParts) -> MoCo:
    """MoCo v1 / v2: momentum key encoder, queue of negatives, InfoNCE, shuffling BN."""
    backbone = parts.backbone()
    head = parts.head("projector", backbone.num_features)
    return MoCo(
        config,
        encoder=Encoder(backbone, head),
        target_updater=parts.target_updater(),
        queue=parts.key_store(head.out_dim),
        loss=parts.loss(),
    )
