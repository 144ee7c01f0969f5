"""The same methods assembled from lightly's components, the way lightly's examples and benchmarks do.

``lightly.models.modules`` heads, ``lightly.loss`` (``NTXentLoss``, with its memory bank for MoCo;
``NegativeCosineSimilarity``), ``lightly.models.utils.update_momentum`` / ``deactivate_requires_grad``,
``lightly.utils.scheduler.cosine_schedule`` for the momentum and ``CosineWarmupScheduler`` for the learning rate,
``lightly.utils.lars.LARS`` where the recipe uses LARS (lightly's benchmarks do), decay groups from
``get_weight_decay_parameters``. The backbone is the same timm model as the other two implementations.

Where lightly's named head differs from the recipe's (SimSiam's CIFAR projector has 2 layers, lightly's 3) the
head is lightly's ``ProjectionHead`` with the recipe's blocks. lightly has no MoCo v3 loss: its 3-line
``2T``-scaled InfoNCE is written here. Like lightly's examples, SimCLR runs the two views as two passes.
Import this module only when lightly is installed.
"""

from __future__ import annotations

import abc
import copy
from typing import Any

import torch
import torch.nn.functional as F
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from lightly.models.modules.heads import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
    MoCoProjectionHead,
    ProjectionHead,
    SimCLRProjectionHead,
    SimSiamPredictionHead,
    SwaVProjectionHead,
    SwaVPrototypes,
)
from lightly.models.utils import deactivate_requires_grad, get_weight_decay_parameters, update_momentum
from lightly.utils.lars import LARS
from lightly.utils.scheduler import CosineWarmupScheduler, cosine_schedule
from torch import nn

from benchmarks.common import BenchConfig
from benchmarks.handwritten import timm_backbone
from benchmarks.methods import backbone_width
from sslcore.recipe import Recipe


def momentum_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    deactivate_requires_grad(target)
    return target


class LightlyModel(nn.Module, abc.ABC):
    """A lightly-style model with its plain-PyTorch training step (lightly's examples loop)."""

    def __init__(self, recipe: Recipe, config: BenchConfig, views: list[torch.Tensor], total_steps: int,
                 steps_per_epoch: int) -> None:
        super().__init__()
        self.recipe = recipe
        self.config = config
        self.views = views
        self.batch = views[0].shape[0]
        self.width = backbone_width(config.backbone)
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.warmup_steps = min(round(recipe.schedule.warmup_epochs * steps_per_epoch), total_steps)
        self.step_index = 0

    def head(self, name: str) -> Any:
        return self.recipe.components[f"heads.{name}"].config

    def option(self, table: str, name: str) -> Any:
        return getattr(self.recipe.components[table].config, name)

    def build_optimizer(self, *modules: nn.Module, fixed_lr: nn.Module | None = None) -> None:
        """lightly's benchmark recipe: decay / no-decay groups, LARS or SGD, per-step warm-up cosine schedule."""
        settings = self.recipe.optimizer
        lr = settings.lr(self.batch)
        decay, no_decay = get_weight_decay_parameters(modules)
        if not settings.exclude_bias_and_norm:
            decay, no_decay = decay + no_decay, []
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        if fixed_lr is not None:
            groups.append({"params": list(fixed_lr.parameters()), "fixed": True})
        if settings.kind == "lars":
            self.optimizer = LARS(groups, lr=lr, momentum=settings.momentum, weight_decay=settings.weight_decay,
                                  trust_coefficient=settings.trust_coefficient)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=lr, momentum=settings.momentum,
                                             weight_decay=settings.weight_decay)
        schedule = self.recipe.schedule
        self.scheduler = CosineWarmupScheduler(
            self.optimizer, warmup_epochs=self.warmup_steps, max_epochs=self.total_steps,
            end_value=schedule.final_lr_ratio, warmup_start_value=schedule.warmup_start_ratio,
        )
        if fixed_lr is not None:  # lightly's scheduler moves every group; keep the fixed one where it started
            self.scheduler.lr_lambdas[-1] = lambda _step: 1.0

    def step(self, views: list[torch.Tensor] | None = None) -> torch.Tensor:
        """One training step on ``views`` (default: the fixed benchmark batch)."""
        with self.config.autocast():
            loss = self.loss(*(self.views if views is None else views))
        loss.backward()
        self.before_update()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.scheduler.step()
        self.step_index += 1
        return loss.detach()

    def before_update(self) -> None:
        """Runs between the backward pass and the optimizer step (DINO cancels its last layer's gradients)."""

    def momentum(self) -> float:
        base, final = self.option("target_updater", "base_momentum"), self.option("target_updater", "final_momentum")
        if self.option("target_updater", "schedule") == "constant":
            return base
        return cosine_schedule(self.step_index, self.total_steps, base, final)

    @abc.abstractmethod
    def loss(self, *views: torch.Tensor) -> torch.Tensor:
        """The method's loss on the views (two, or a multi-crop's global then local crops)."""


class MoCoV2(LightlyModel):
    """lightly ``examples/pytorch/moco.py``: momentum update, query, key, ``NTXentLoss`` with a memory bank. Like
    that example, no shuffled BatchNorm (the recipes' ``shuffle_bn``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        projector = self.head("projector")
        self.backbone = self.config.prepare(timm_backbone(self.config))
        if projector.num_layers == 1:  # MoCo v1 and the MoCo CIFAR-10 demo: the ResNet's fc, one linear layer
            head = ProjectionHead([(self.width, projector.out_dim, None, None)])
        else:
            head = MoCoProjectionHead(self.width, projector.hidden_dim, projector.out_dim, projector.num_layers)
        self.projection_head = self.config.prepare(head)
        self.backbone_momentum = momentum_copy(self.backbone)
        self.projection_head_momentum = momentum_copy(self.projection_head)
        self.criterion = NTXentLoss(
            temperature=self.option("loss", "temperature"),
            memory_bank_size=(self.option("key_store", "size"), projector.out_dim),
        ).to(self.config.device)
        self.build_optimizer(self.backbone, self.projection_head)

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        m = self.momentum()
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=m)
        query = self.projection_head(self.backbone(x1))
        key = self.projection_head_momentum(self.backbone_momentum(x2)).detach()
        return self.criterion(query, key)


class SimCLR(LightlyModel):
    """lightly ``examples/pytorch/simclr.py``: ``SimCLRProjectionHead``, ``NTXentLoss``, one pass per view."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        projector = self.head("projector")
        self.backbone = self.config.prepare(timm_backbone(self.config))
        self.projection_head = self.config.prepare(SimCLRProjectionHead(
            self.width, projector.hidden_dim, projector.out_dim, num_layers=projector.num_layers))
        self.criterion = NTXentLoss(temperature=self.option("loss", "temperature"))
        self.build_optimizer(self.backbone, self.projection_head)

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        z0 = self.projection_head(self.backbone(x1))
        z1 = self.projection_head(self.backbone(x2))
        return self.criterion(z0, z1)


class BYOL(LightlyModel):
    """lightly ``examples/pytorch/byol.py``: ``BYOLProjectionHead`` / ``BYOLPredictionHead``, cosine momentum."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        projector, predictor = self.head("projector"), self.head("predictor")
        self.backbone = self.config.prepare(timm_backbone(self.config))
        self.projection_head = self.config.prepare(
            BYOLProjectionHead(self.width, projector.hidden_dim, projector.out_dim))
        self.prediction_head = self.config.prepare(
            BYOLPredictionHead(projector.out_dim, predictor.hidden_dim, predictor.out_dim))
        self.backbone_momentum = momentum_copy(self.backbone)
        self.projection_head_momentum = momentum_copy(self.projection_head)
        self.criterion = NegativeCosineSimilarity()
        self.build_optimizer(self.backbone, self.projection_head, self.prediction_head)

    def forward_online(self, x: torch.Tensor) -> torch.Tensor:
        return self.prediction_head(self.projection_head(self.backbone(x)))

    def forward_momentum(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head_momentum(self.backbone_momentum(x)).detach()

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        m = self.momentum()
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=m)
        p0, z0 = self.forward_online(x1), self.forward_momentum(x1)
        p1, z1 = self.forward_online(x2), self.forward_momentum(x2)
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))


class SimSiam(LightlyModel):
    """lightly ``examples/pytorch/simsiam.py`` with the recipe's 2-layer projector as ``ProjectionHead`` blocks."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        projector, predictor = self.head("projector"), self.head("predictor")
        hidden, out = projector.hidden_dim, projector.out_dim
        self.backbone = self.config.prepare(timm_backbone(self.config))
        self.projection_head = self.config.prepare(ProjectionHead([
            (self.width, hidden, nn.BatchNorm1d(hidden), nn.ReLU()),
            (hidden, out, nn.BatchNorm1d(out, affine=projector.last_batch_norm_affine), None),
        ]))
        self.prediction_head = self.config.prepare(SimSiamPredictionHead(out, predictor.hidden_dim, predictor.out_dim))
        self.criterion = NegativeCosineSimilarity()
        self.build_optimizer(self.backbone, self.projection_head, fixed_lr=self.prediction_head)

    def forward_views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.projection_head(self.backbone(x))
        return z.detach(), self.prediction_head(z)

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        z0, p0 = self.forward_views(x1)
        z1, p1 = self.forward_views(x2)
        return 0.5 * (self.criterion(z0, p1) + self.criterion(z1, p0))


class MoCoV3(LightlyModel):
    """``MoCoProjectionHead`` (BN, as its docstring's MoCo v3 setting), ``BYOLPredictionHead``-shaped predictor,
    ``update_momentum`` with ``cosine_schedule``; lightly has no MoCo v3 loss, so it is written here."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        projector, predictor = self.head("projector"), self.head("predictor")
        self.backbone = self.config.prepare(timm_backbone(self.config))
        self.projection_head = self.config.prepare(MoCoProjectionHead(
            self.width, projector.hidden_dim, projector.out_dim, num_layers=projector.num_layers, batch_norm=True))
        self.prediction_head = self.config.prepare(
            BYOLPredictionHead(projector.out_dim, predictor.hidden_dim, predictor.out_dim))
        self.backbone_momentum = momentum_copy(self.backbone)
        self.projection_head_momentum = momentum_copy(self.projection_head)
        self.temperature = self.option("loss", "temperature")
        self.labels = torch.arange(self.batch, device=self.config.device)
        self.build_optimizer(self.backbone, self.projection_head, self.prediction_head)

    def contrast(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).t() / self.temperature
        return F.cross_entropy(logits, self.labels) * (2 * self.temperature)

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        q1 = self.prediction_head(self.projection_head(self.backbone(x1)))
        q2 = self.prediction_head(self.projection_head(self.backbone(x2)))
        m = self.momentum()
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=m)
        with torch.no_grad():
            k1 = self.projection_head_momentum(self.backbone_momentum(x1))
            k2 = self.projection_head_momentum(self.backbone_momentum(x2))
        return self.contrast(q1, k2) + self.contrast(q2, k1)


class SwAV(LightlyModel):
    """lightly ``examples/pytorch/swav.py``: ``SwaVProjectionHead``, ``SwaVPrototypes`` (normalised every step,
    frozen for the recipe's ``freeze_prototypes_niters``), ``SwaVLoss`` on the global then local crops. Without
    lightly's queue: the recipes start theirs at ``epoch_queue_starts`` (epoch 50 on CIFAR-10), so budgets shorter
    than that compare like with like."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        projector, method = self.head("projector"), self.recipe.components["method"].config
        self.backbone = self.config.prepare(timm_backbone(self.config))
        self.projection_head = self.config.prepare(
            SwaVProjectionHead(self.width, projector.hidden_dim, projector.out_dim))
        self.prototypes = self.config.prepare(SwaVPrototypes(
            projector.out_dim, self.head("prototypes").num_prototypes, method.freeze_prototypes_niters))
        self.global_crops = len(method.crops_for_assign)
        self.criterion = SwaVLoss(temperature=self.option("loss", "temperature"),
                                  sinkhorn_iterations=method.sinkhorn_iterations, sinkhorn_epsilon=method.epsilon)
        self.build_optimizer(self.backbone, self.projection_head, self.prototypes)

    def forward_crop(self, x: torch.Tensor) -> torch.Tensor:
        features = F.normalize(self.projection_head(self.backbone(x)), dim=1)
        return self.prototypes(features, self.step_index)

    def loss(self, *views: torch.Tensor) -> torch.Tensor:
        self.prototypes.normalize()
        outputs = [self.forward_crop(view) for view in views]
        return self.criterion(outputs[: self.global_crops], outputs[self.global_crops:])


class DINO(LightlyModel):
    """lightly ``examples/pytorch/dino.py``: ``DINOProjectionHead`` for student and (momentum) teacher,
    ``DINOLoss`` with the recipe's temperatures and centre momentum, the teacher on the global crops, the last
    layer's gradients cancelled for ``freeze_last_layer`` epochs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        projector, method = self.head("projector"), self.recipe.components["method"].config
        self.backbone = self.config.prepare(timm_backbone(self.config))
        heads = [self.config.prepare(DINOProjectionHead(
            self.width, projector.hidden_dim, projector.bottleneck_dim, projector.out_dim,
            batch_norm=projector.use_bn, freeze_last_layer=method.freeze_last_layer,
            norm_last_layer=projector.norm_last_layer)) for _ in range(2)]
        self.projection_head, self.projection_head_momentum = heads
        # weight_norm layers cannot be deep-copied: the teacher head is a second one loaded with the student's
        # weights (as the official DINO's teacher; lightly's example leaves the two heads' initialisations apart)
        self.projection_head_momentum.load_state_dict(self.projection_head.state_dict())
        deactivate_requires_grad(self.projection_head_momentum)
        self.backbone_momentum = momentum_copy(self.backbone)
        self.global_crops = self.option("views", "global_crops")
        self.criterion = DINOLoss(
            output_dim=projector.out_dim, warmup_teacher_temp=method.warmup_teacher_temp,
            teacher_temp=method.teacher_temp, warmup_teacher_temp_epochs=method.warmup_teacher_temp_epochs,
            student_temp=self.option("loss", "temperature"), center_momentum=method.center_momentum,
        ).to(self.config.device)
        self.build_optimizer(self.backbone, self.projection_head)

    def epoch(self) -> int:
        return self.step_index // self.steps_per_epoch

    def loss(self, *views: torch.Tensor) -> torch.Tensor:
        m = self.momentum()
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=m)
        with torch.no_grad():
            teacher = [self.projection_head_momentum(self.backbone_momentum(view))
                       for view in views[: self.global_crops]]
        student = [self.projection_head(self.backbone(view)) for view in views]
        return self.criterion(teacher, student, epoch=self.epoch())

    def before_update(self) -> None:
        self.projection_head.cancel_last_layer_gradients(current_epoch=self.epoch())


IMPLEMENTATIONS: dict[str, type[LightlyModel]] = {
    "mocov2": MoCoV2,
    "simclr": SimCLR,
    "byol": BYOL,
    "simsiam": SimSiam,
    "mocov3": MoCoV3,
    "swav": SwAV,
    "dino": DINO,
}
