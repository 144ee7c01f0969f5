"""Auxiliary BatchNorm: every BatchNorm of a network gets a twin with its own affine parameters and running
statistics, and a context routes forwards through the twins (Xie et al. 2020, "Adversarial Examples Improve Image
Recognition", sec. 3.3: adversarial examples are normalised by auxiliary BatchNorms, clean ones by the main ones).

Outside :func:`auxiliary_batchnorm` every forward uses the main BatchNorms, so evaluation and kNN see the main
network; :func:`main_branch` gives the network with its main BatchNorms only, as the exports hold it (it loads in
timm as a plain model). Both sets are submodules, so checkpoints keep both. :func:`frozen_running_stats` lets a
network normalise with batch statistics without moving its main running statistics (an attack's forward).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from sslcore.errors import SslcoreError


class DualBatchNorm(nn.Module):
    """A BatchNorm (``main``) and its auxiliary twin (``aux``): a copy, with ``aux_momentum`` when given."""

    def __init__(self, main: _BatchNorm, aux_momentum: float | None = None) -> None:
        super().__init__()
        self.main = main
        self.aux = copy.deepcopy(main)
        if aux_momentum is not None:
            self.aux.momentum = aux_momentum
        self.route_aux = False

    def forward(self, x: Tensor) -> Tensor:
        return self.aux(x) if self.route_aux else self.main(x)


def add_auxiliary_batchnorm(model: nn.Module, momentum: float | None = None) -> int:
    """Give every BatchNorm of ``model`` an auxiliary twin, in place; returns how many. A model without BatchNorm
    is an error: the option would do nothing."""
    targets = [(name, module) for name, module in model.named_modules() if isinstance(module, _BatchNorm)]
    if not targets:
        raise SslcoreError(
            f"dual_bn: {type(model).__name__} has no BatchNorm to give a twin",
            hint="set dual_bn = false for this model",
        )
    for name, module in targets:
        model.set_submodule(name, DualBatchNorm(module, momentum))
    return len(targets)


def has_dual_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(module, DualBatchNorm) for module in model.modules())


@contextlib.contextmanager
def auxiliary_batchnorm(model: nn.Module) -> Iterator[None]:
    """Route every forward of ``model`` inside the block through the auxiliary BatchNorms."""
    duals = [module for module in model.modules() if isinstance(module, DualBatchNorm)]
    for dual in duals:
        dual.route_aux = True
    try:
        yield
    finally:
        for dual in duals:
            dual.route_aux = False


@contextlib.contextmanager
def frozen_running_stats(model: nn.Module) -> Iterator[None]:
    """Inside the block, BatchNorms in training mode normalise by batch statistics and leave their running
    statistics (and ``num_batches_tracked``) unchanged; auxiliary twins keep updating theirs."""
    twins = {id(module.aux) for module in model.modules() if isinstance(module, DualBatchNorm)}
    tracking = [
        module
        for module in model.modules()
        if isinstance(module, _BatchNorm) and module.training and module.track_running_stats and id(module) not in twins
    ]
    for module in tracking:
        module.track_running_stats = False
    try:
        yield
    finally:
        for module in tracking:
            module.track_running_stats = True


def main_branch(model: nn.Module) -> nn.Module:
    """``model`` with each :class:`DualBatchNorm` replaced by its main BatchNorm (a copy; ``model`` itself when it
    has none): the network as exported and loaded by timm."""
    if not has_dual_batchnorm(model):
        return model
    plain = copy.deepcopy(model)
    for name, module in [(n, m) for n, m in plain.named_modules() if isinstance(m, DualBatchNorm)]:
        plain.set_submodule(name, module.main)
    return plain
