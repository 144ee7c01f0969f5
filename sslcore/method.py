"""The method contract: what a method plugin implements and what the engine gives it.

A method is an ``nn.Module`` that owns its networks (online, target, heads) and state (key stores, centers).
The engine owns the loop: it calls ``forward(batch, step)`` for the loss, steps the optimizer, then calls
``after_optimizer_step(step)`` (target updates, queue / bank updates).
"""

from __future__ import annotations

import abc
from typing import Any

import attrs
import torch
from torch import nn

from sslcore.errors import SslcoreError


@attrs.frozen
class Batch:
    """One training batch on this process: ``views[v]`` is ``(B, C, H, W)`` (multi-crop views may differ in size),
    ``index`` the dataset positions ``(B,)``, ``label`` the labels ``(B,)`` when the dataset has them."""

    views: list[torch.Tensor]
    index: torch.Tensor
    label: torch.Tensor | None = None


@attrs.frozen
class StepInfo:
    """Where training stands: ``step`` counts optimizer steps already taken (0 for the first)."""

    step: int
    total_steps: int
    steps_per_epoch: int

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1)."""
        return self.step / self.total_steps


@attrs.define
class MethodOutput:
    """The loss to minimise and scalars to log (plain floats or 0-d tensors)."""

    loss: torch.Tensor
    logs: dict[str, Any] = attrs.Factory(dict)


class Method(nn.Module, abc.ABC):
    """Base class of methods. Subclasses implement :meth:`forward` and set :attr:`backbone`."""

    #: The online backbone: evaluated by kNN, exported as the run's result.
    backbone: nn.Module

    @abc.abstractmethod
    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:  # type: ignore[override]
        """The loss of this process's batch (the mean over its samples)."""

    def evaluation_network(self) -> nn.Module:
        """The network whose features the kNN monitor evaluates: the backbone unless a method says otherwise
        (SimCLR v2 evaluates from a layer of its projection head)."""
        return self.backbone

    def before_optimizer_step(self, step: StepInfo) -> None:
        """Called after backward, before the optimizer step (e.g. cancel gradients of frozen layers)."""

    def after_optimizer_step(self, step: StepInfo) -> None:
        """Called after the optimizer step (e.g. momentum update of the target, enqueue keys)."""


class MethodParts:
    """What a method's factory receives: builders for the recipe's component tables plus run facts.

    Each builder marks its table as used; the engine rejects recipes with tables the method never used.
    """

    def __init__(self, recipe: Any, *, num_samples: int, total_steps: int, steps_per_epoch: int) -> None:
        self.recipe = recipe
        self.num_samples = num_samples
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.used: set[str] = set()
        self._method_name = recipe.components["method"].kind

    def _spec(self, table: str) -> Any:
        self.used.add(table)
        return self.recipe.require(table, needed_by=f"method '{self._method_name}'")

    def has(self, table: str) -> bool:
        return self.recipe.get(table) is not None

    def backbone(self) -> nn.Module:
        """A new backbone (call twice for an online and a target copy with independent weights)."""
        return self._spec("backbone").build()

    def head(self, name: str, in_dim: int) -> nn.Module:
        """A new head from ``[heads.<name>]``."""
        return self._spec(f"heads.{name}").build(in_dim=in_dim)

    def key_store(self, dim: int) -> nn.Module:
        return self._spec("key_store").build(dim=dim, num_samples=self.num_samples)

    def target_updater(self) -> Any:
        return self._spec("target_updater").build(total_steps=self.total_steps)

    def loss(self) -> nn.Module:
        return self._spec("loss").build()

    def check_all_used(self) -> None:
        ignored = {"method", "data", "views", "eval"}
        unused = sorted(set(self.recipe.components) - self.used - ignored)
        if unused:
            raise SslcoreError(
                f"method '{self._method_name}' does not use table{'s' if len(unused) > 1 else ''} "
                + ", ".join(f"[{table}]" for table in unused),
                where=self.recipe.source,
                hint="remove it, or pick a method that uses it",
            )
