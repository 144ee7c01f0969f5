"""The method contract: what a method plugin implements and what the engine gives it.

A method is an ``nn.Module`` that owns its networks (online, target, heads) and state (key stores, centers).
The engine owns the order of a step (``sslcore.engine.step.train_step``):

1. every target declared with :meth:`Method.follow` ``(when="before_forward")`` moves towards its online network
   (MoCo v1/v2/v3: the key encoder of step t has absorbed the query encoder of step t);
2. ``forward(batch, step)`` returns the loss and the key-store writes it wants (:class:`KeyWrite`); it moves no
   target and writes no store itself;
3. backward, ``before_optimizer_step``, gradient clipping, the optimizer step;
4. every target declared with ``when="after_step"`` moves (BYOL, DINO, SimSiam's no-op);
5. the forward's key-store writes are applied (``store.write(...)``: enqueue, memory-bank update);
6. ``after_optimizer_step(step)`` for anything else a method keeps (SwAV's prototype normalisation).

The engine checkpoints every declared target updater's state and every key store (they are submodules).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Literal

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


#: When the engine moves a target network: before the forward (MoCo) or after the optimizer step (BYOL, DINO).
Timing = Literal["before_forward", "after_step"]
TIMINGS: tuple[str, ...] = ("before_forward", "after_step")


@attrs.frozen(eq=False)
class Follower:
    """A target network that follows an online one through a target updater, at a declared time."""

    online: nn.Module
    target: nn.Module
    updater: Any  # sslcore.components.target_updaters.TargetUpdater
    when: Timing

    def update(self, step: int) -> None:
        with torch.no_grad():
            self.updater.update(self.online, self.target, step)


@attrs.frozen(eq=False)
class KeyWrite:
    """Keys a forward asks the engine to write into ``store`` after the optimizer step: ``store.write(keys,
    index=index, labels=labels)`` (a queue enqueues them, a memory bank updates the rows of ``index``)."""

    store: nn.Module
    keys: torch.Tensor
    index: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def apply(self) -> None:
        self.store.write(self.keys.detach(), index=self.index, labels=self.labels)


@attrs.define
class MethodOutput:
    """The loss to minimise, scalars to log (plain floats or 0-d tensors) and key-store writes for after the step."""

    loss: torch.Tensor
    logs: dict[str, Any] = attrs.Factory(dict)
    writes: list[KeyWrite] = attrs.Factory(list)


class Method(nn.Module, abc.ABC):
    """Base class of methods. Subclasses implement :meth:`forward` and set :attr:`backbone`."""

    #: The online backbone: evaluated by kNN, exported as the run's result.
    backbone: nn.Module

    def __init__(self) -> None:
        super().__init__()
        self._followers: list[Follower] = []

    def follow(self, online: nn.Module, updater: Any, *, when: Timing) -> nn.Module:
        """Make ``updater``'s target network for ``online`` and let the engine move it at ``when``.

        Returns the target; assign it to an attribute so it is a submodule (saved, moved to the device).
        """
        if when not in TIMINGS:
            raise SslcoreError(f"a target moves 'before_forward' or 'after_step', got when={when!r}")
        target = updater.make_target(online)
        self._followers.append(Follower(online, target, updater, when))
        return target

    def followers(self) -> list[Follower]:
        """The targets declared with :meth:`follow`, in declaration order."""
        return list(self._followers)

    @abc.abstractmethod
    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:  # type: ignore[override]
        """The loss of this process's batch (the mean over its samples)."""

    def evaluation_network(self) -> nn.Module:
        """The network whose features the kNN monitor evaluates: the backbone unless a method says otherwise
        (SimCLR v2 evaluates from a layer of its projection head)."""
        return self.backbone

    def head_network(self) -> nn.Module | None:
        """The backbone followed by the head whose normalised output the official kNN monitors of MoCo, InstDisc
        and InvaSpread evaluate (``[eval] features = "head"``); None for a method without one."""
        return None

    def exported_networks(self) -> dict[str, nn.Module]:
        """The networks a run exports, by name: the backbone unless a method has several encoders (one per view:
        ``{"l": ..., "ab": ...}``, written as ``backbone_l.safetensors`` and ``backbone_ab.safetensors``)."""
        return {"backbone": self.backbone}

    def write_outputs(self, run_dir: Path) -> None:
        """Write files of the method's own into the run directory (a grid of samples); called on the main process
        once training ends, after the networks are exported. Nothing by default."""

    def before_optimizer_step(self, step: StepInfo) -> None:
        """Called after backward, before the optimizer step (e.g. cancel gradients of frozen layers)."""

    def after_optimizer_step(self, step: StepInfo) -> None:
        """Called last in a step, after the engine moved the ``after_step`` targets and applied the key-store
        writes (e.g. SwAV's prototype normalisation)."""


class MethodParts:
    """What a method's factory receives: builders for the recipe's component tables plus run facts.

    :meth:`component` builds any kind from its table (``[backbone]``) or a named one (``[backbones.l]``); the
    typed builders are its shorthands. Each marks its table as used; the engine rejects recipes with tables the
    method never used.
    """

    #: Run facts passed to every factory whose kind names them in its ``runtime``.
    RUN_FACTS: tuple[str, ...] = ("num_samples", "total_steps", "steps_per_epoch")

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
        """Whether the recipe has ``table`` (``key_store``, ``key_stores.support``, ``heads.predictor``)."""
        return self.recipe.get(table) is not None

    def component(self, kind: str, name: str | None = None, **runtime: Any) -> Any:
        """A new component of ``kind`` from its table, or from ``[<named>.<name>]`` when ``name`` is given.

        ``runtime`` holds the arguments its factory takes besides the config; run facts are filled in.
        """
        declared = self.recipe.kinds[kind]
        group = declared.table if name is None else declared.named
        if group is None:
            wanted = f"unnamed: [{declared.table}]" if declared.table else f"named: [{declared.named}.<name>]"
            raise SslcoreError(f"{kind} tables are {wanted}, got name={name!r}")
        runtime = {**{fact: getattr(self, fact) for fact in self.RUN_FACTS if fact in declared.runtime}, **runtime}
        if sorted(runtime) != sorted(declared.runtime):
            raise SslcoreError(
                f"a {kind} is built with runtime arguments ({', '.join(declared.runtime)}), got ({', '.join(runtime)})",
                hint=f"pass those not among the run facts ({', '.join(self.RUN_FACTS)}) to parts.component",
            )
        return self._spec(group if name is None else f"{group}.{name}").build(**runtime)

    def backbone(self, name: str | None = None) -> nn.Module:
        """A new backbone from ``[backbone]`` or ``[backbones.<name>]`` (call twice for an online and a target copy
        with independent weights)."""
        return self.component("backbone", name)

    def head(self, name: str, in_dim: int) -> nn.Module:
        """A new head from ``[heads.<name>]``."""
        return self.component("head", name, in_dim=in_dim)

    def key_store(self, dim: int, name: str | None = None) -> nn.Module:
        """A new key store of ``dim``-wide keys from ``[key_store]`` or ``[key_stores.<name>]``."""
        return self.component("key_store", name, dim=dim)

    def target_updater(self, name: str | None = None) -> Any:
        """A new target updater from ``[target_updater]`` or ``[target_updaters.<name>]``."""
        return self.component("target_updater", name)

    def loss(self, name: str | None = None) -> nn.Module:
        """A new loss from ``[loss]`` or ``[losses.<name>]``."""
        return self.component("loss", name)

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
