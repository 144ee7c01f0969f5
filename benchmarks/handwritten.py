"""The cost floor: each method written plainly in PyTorch, as a careful researcher writes a training loop.

A timm backbone, the heads as ``nn.Sequential``, the loss in a few lines, the optimizer the recipe names (torch
SGD / AdamW, timm LARS) over weight-decay / no-decay groups, the per-step warm-up + cosine learning rate, and
momentum updates as one ``torch._foreach_lerp_``. Nothing is checked, nothing is pluggable.

The hyperparameters are read from the same resolved recipe as sslcore's run, and :meth:`HandWritten.load_from`
copies the sslcore method's initial weights (and MoCo's queue), so both start from the same state: their first
losses must agree, which the benchmark reports as its check that both compute the same thing.
"""

from __future__ import annotations

import abc
import copy
import math
from typing import Any

import timm
import timm.optim
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import BenchConfig
from benchmarks.methods import backbone_width
from sslcore.components.heads import MLPHeadConfig
from sslcore.method import Method
from sslcore.recipe import Recipe


def timm_backbone(config: BenchConfig) -> nn.Module:
    """A timm model returning pooled features; the CIFAR stem is a 3x3 stride-1 ``conv1`` and no max-pool."""
    model = timm.create_model(config.backbone, num_classes=0)
    if config.cifar_stem:
        if not isinstance(getattr(model, "conv1", None), nn.Conv2d):
            raise ValueError(f"the hand-written CIFAR stem needs a ResNet with a `conv1`; {config.backbone} has none")
        model.conv1 = nn.Conv2d(3, model.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


def mlp(in_dim: int, head: MLPHeadConfig) -> nn.Sequential:
    """Linear [-> BN] -> ReLU hidden layers and a Linear [-> BN] output, as the recipe's ``[heads.*]`` table says."""
    layers: list[nn.Module] = []
    for index in range(head.num_layers):
        last = index == head.num_layers - 1
        width = head.out_dim if last else head.hidden_dim
        with_bn = head.last_batch_norm if last else head.batch_norm
        layers.append(nn.Linear(in_dim, width, bias=head.bias and not with_bn))
        if with_bn:
            norm = nn.BatchNorm1d(width, affine=head.last_batch_norm_affine if last else True)
            if last and norm.affine and not head.last_batch_norm_center:
                norm.bias.requires_grad_(False)
            layers.append(norm)
        if not last:
            layers.append(nn.ReLU())
        in_dim = width
    return nn.Sequential(*layers)


def frozen_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy every parameter and buffer of ``source`` into ``target``, matched by position and shape."""
    sources, targets = list(source.state_dict().values()), list(target.state_dict().values())
    if len(sources) != len(targets) or any(s.shape != t.shape for s, t in zip(sources, targets)):
        raise ValueError(f"{type(source).__name__} and the hand-written {type(target).__name__} differ in structure")
    with torch.no_grad():
        for s, t in zip(sources, targets):
            t.copy_(s)


def cosine_momentum(base: float, final: float, step: int, total: int) -> float:
    """BYOL's ``tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2`` with 1 replaced by ``final``."""
    return final - (final - base) * (math.cos(math.pi * min(step, total) / total) + 1) / 2


class HandWritten(nn.Module, abc.ABC):
    """A method's networks plus the plain loop: lr for this step, loss, backward, optimizer step, after-step."""

    def __init__(self, recipe: Recipe, config: BenchConfig, views: list[torch.Tensor], total_steps: int,
                 steps_per_epoch: int) -> None:
        super().__init__()
        self.recipe = recipe
        self.config = config
        self.views = views
        self.batch = views[0].shape[0]
        self.width = backbone_width(config.backbone)
        self.total_steps = total_steps
        schedule = recipe.schedule
        if schedule.kind not in ("cosine", "constant") or schedule.weight_decay_end is not None:
            raise ValueError("the hand-written loop implements warm-up + cosine or constant learning rates only")
        self.warmup_steps = min(round(schedule.warmup_epochs * steps_per_epoch), total_steps)
        self.step_index = 0

    def head(self, name: str) -> MLPHeadConfig:
        return self.recipe.components[f"heads.{name}"].config

    def option(self, table: str, name: str) -> Any:
        return getattr(self.recipe.components[table].config, name)

    def build_optimizer(self) -> None:
        """Decay / no-decay (/ fixed-lr) groups over the trainable parameters, then the recipe's optimizer."""
        settings = self.recipe.optimizer
        lr = settings.lr(self.batch)
        groups: dict[tuple[bool, bool], dict] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            decay = param.ndim > 1 or not settings.exclude_bias_and_norm
            fixed = name.startswith(tuple(settings.fixed_lr_prefixes))
            group = groups.setdefault((decay, fixed), {
                "params": [], "weight_decay": settings.weight_decay if decay else 0.0, "initial_lr": lr, "fixed": fixed,
            })
            group["params"].append(param)
        params = list(groups.values())
        if settings.kind == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr, momentum=settings.momentum, nesterov=settings.nesterov)
        elif settings.kind == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=lr, betas=tuple(settings.betas), eps=settings.eps)
        else:
            self.optimizer = timm.optim.Lars(params, lr=lr, momentum=settings.momentum, nesterov=settings.nesterov,
                                             trust_coeff=settings.trust_coefficient)

    def lr_factor(self, step: int) -> float:
        schedule = self.recipe.schedule
        if step < self.warmup_steps:
            return schedule.warmup_start_ratio + (1 - schedule.warmup_start_ratio) * step / self.warmup_steps
        if schedule.kind == "constant":
            return 1.0
        progress = min((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 1.0)
        return schedule.final_lr_ratio + (1 - schedule.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def step(self) -> torch.Tensor:
        factor = self.lr_factor(self.step_index)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * (1.0 if group["fixed"] else factor)
        with self.config.autocast():
            loss = self.loss(*self.views)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.after_step()
        self.step_index += 1
        return loss.detach()

    @abc.abstractmethod
    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The method's loss on the two views (its forward pass)."""

    def after_step(self) -> None:
        """Work after the optimizer step (momentum update, enqueue)."""

    @abc.abstractmethod
    def load_from(self, method: Method) -> None:
        """Copy the sslcore method's initial weights (and state) into these networks."""


class MoCoV2(HandWritten):
    """Official ``moco/builder.py`` in plain form: momentum update, q and k, logits against the queue, enqueue."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        projector = self.head("projector")
        self.encoder = self.config.prepare(nn.Sequential(timm_backbone(self.config), mlp(self.width, projector)))
        self.key_encoder = frozen_copy(self.encoder)
        size = self.option("key_store", "size")
        if size % self.batch:
            raise ValueError(f"the hand-written queue needs a batch that divides its size {size}")
        self.register_buffer("queue", F.normalize(torch.randn(size, projector.out_dim), dim=1).to(self.config.device))
        self.ptr = 0
        self.temperature = self.option("loss", "temperature")
        self.momentum = self.option("target_updater", "base_momentum")
        self.labels = torch.zeros(self.batch, dtype=torch.long, device=self.config.device)
        self.query_params, self.key_params = list(self.encoder.parameters()), list(self.key_encoder.parameters())
        self.build_optimizer()

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            torch._foreach_lerp_(self.key_params, self.query_params, 1 - self.momentum)
        q = F.normalize(self.encoder(x1), dim=1)
        with torch.no_grad():
            self.keys = F.normalize(self.key_encoder(x2), dim=1)
        logits = torch.cat([(q * self.keys).sum(1, keepdim=True), q @ self.queue.t()], dim=1) / self.temperature
        return F.cross_entropy(logits, self.labels)

    def after_step(self) -> None:
        self.queue[self.ptr : self.ptr + self.batch] = self.keys
        self.ptr = (self.ptr + self.batch) % self.queue.shape[0]

    def load_from(self, method: Method) -> None:
        copy_weights(method.encoder, self.encoder)
        copy_weights(method.target, self.key_encoder)
        self.queue.copy_(method.stores[0].queue)


class SimCLR(HandWritten):
    """Both views in one pass, NT-Xent over the 2B projections (each excluded from its own softmax)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.backbone = self.config.prepare(timm_backbone(self.config))
        self.projector = self.config.prepare(mlp(self.width, self.head("projector")))
        self.temperature = self.option("loss", "temperature")
        index = torch.arange(self.batch, device=self.config.device)
        self.positives = torch.cat([index + self.batch, index])
        self.own = torch.eye(2 * self.batch, dtype=torch.bool, device=self.config.device)
        self.build_optimizer()

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.projector(self.backbone(torch.cat([x1, x2]))), dim=1)
        logits = (z @ z.t() / self.temperature).masked_fill(self.own, float("-inf"))
        return 2 * F.cross_entropy(logits, self.positives)  # official objective.py: loss_a + loss_b

    def load_from(self, method: Method) -> None:
        copy_weights(method.encoder.backbone, self.backbone)
        copy_weights(method.encoder.projector, self.projector)


class BYOL(HandWritten):
    """Online network + predictor regress the target's projection of the other view; cosine EMA after the step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        projector, predictor = self.head("projector"), self.head("predictor")
        self.online = self.config.prepare(nn.Sequential(timm_backbone(self.config), mlp(self.width, projector)))
        self.predictor = self.config.prepare(mlp(projector.out_dim, predictor))
        self.target = frozen_copy(self.online)
        self.online_params, self.target_params = list(self.online.parameters()), list(self.target.parameters())
        self.base_momentum = self.option("target_updater", "base_momentum")
        self.final_momentum = self.option("target_updater", "final_momentum")
        self.build_optimizer()

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        p1, p2 = self.predictor(self.online(x1)), self.predictor(self.online(x2))
        with torch.no_grad():
            t1, t2 = self.target(x1), self.target(x2)
        return (2 - 2 * F.cosine_similarity(p1, t2)).mean() + (2 - 2 * F.cosine_similarity(p2, t1)).mean()

    def after_step(self) -> None:
        m = cosine_momentum(self.base_momentum, self.final_momentum, self.step_index, self.total_steps)
        with torch.no_grad():
            torch._foreach_lerp_(self.target_params, self.online_params, 1 - m)

    def load_from(self, method: Method) -> None:
        copy_weights(method.encoder, self.online)
        copy_weights(method.predictor, self.predictor)
        copy_weights(method.target, self.target)


class SimSiam(HandWritten):
    """Encoder + predictor; negative cosine to the other view's detached projection (official ``builder.py``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        projector, predictor = self.head("projector"), self.head("predictor")
        self.encoder = self.config.prepare(nn.Sequential(timm_backbone(self.config), mlp(self.width, projector)))
        self.predictor = self.config.prepare(mlp(projector.out_dim, predictor))
        self.build_optimizer()

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.encoder(x1), self.encoder(x2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return -0.5 * (F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean())

    def load_from(self, method: Method) -> None:
        copy_weights(method.encoder, self.encoder)
        copy_weights(method.predictor, self.predictor)


class MoCoV3(HandWritten):
    """Official ``moco-v3`` ``builder.py``: queries, momentum update, keys, symmetric ``2T``-scaled InfoNCE."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        projector, predictor = self.head("projector"), self.head("predictor")
        self.encoder = self.config.prepare(nn.Sequential(timm_backbone(self.config), mlp(self.width, projector)))
        self.predictor = self.config.prepare(mlp(projector.out_dim, predictor))
        self.momentum_encoder = frozen_copy(self.encoder)
        self.online_params = list(self.encoder.parameters())
        self.momentum_params = list(self.momentum_encoder.parameters())
        self.temperature = self.option("loss", "temperature")
        self.base_momentum = self.option("target_updater", "base_momentum")
        self.final_momentum = self.option("target_updater", "final_momentum")
        self.labels = torch.arange(self.batch, device=self.config.device)
        self.build_optimizer()

    def contrast(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).t() / self.temperature
        return F.cross_entropy(logits, self.labels) * (2 * self.temperature)

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        q1, q2 = self.predictor(self.encoder(x1)), self.predictor(self.encoder(x2))
        with torch.no_grad():
            m = cosine_momentum(self.base_momentum, self.final_momentum, self.step_index, self.total_steps)
            torch._foreach_lerp_(self.momentum_params, self.online_params, 1 - m)
            k1, k2 = self.momentum_encoder(x1), self.momentum_encoder(x2)
        return self.contrast(q1, k2) + self.contrast(q2, k1)

    def load_from(self, method: Method) -> None:
        copy_weights(method.encoder, self.encoder)
        copy_weights(method.predictor, self.predictor)
        copy_weights(method.target, self.momentum_encoder)


IMPLEMENTATIONS: dict[str, type[HandWritten]] = {
    "mocov2": MoCoV2,
    "simclr": SimCLR,
    "byol": BYOL,
    "simsiam": SimSiam,
    "mocov3": MoCoV3,
}
