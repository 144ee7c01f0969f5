"""Attacks: adversarial views that maximise a method's own loss (the ``attack`` kind, recipe table ``[attack]``).

Why the core holds them: an attack needs nothing from a method but its loss on a batch, so it works for any
method (contrastive, self-distillation, supervised) and any recipe can carry an ``[attack]`` table. The engine's
step (:func:`sslcore.engine.step.train_step`) then minimises ``clean loss + weight * adversarial loss``, where
the adversarial loss is the method's loss on the batch whose view ``into_view`` is replaced by the adversarial
version of view ``from_view``: Ho and Vasconcelos 2020 (official ``SimCLR/main.py`` and ``UEL/main.py``
``gen_adv``) pair view 0 with its own adversarial version (``from_view = 0``, ``into_view = 1``); supervised
adversarial training replaces the one view (``from_view = into_view = 0``).

An attack works in pixel space: it undoes the views' normalisation (``mean`` / ``std`` of ``[views]``), takes
signed-gradient steps of ``step_size`` that stay within ``epsilon`` (L-infinity) of the clean pixels and inside
[0, 1], and normalises again. Its gradients are taken with ``torch.autograd.grad`` with respect to the images
only, so no parameter's ``.grad`` changes; the method's BatchNorms run on batch statistics without moving their
running statistics, or on their auxiliary twins when the backbone has ``dual_bn`` (:mod:`dual_bn`).

Across processes: the method's loss gathers the global batch with gradient, so each rank's input gradient is
``world_size`` times that of one process holding the global batch; the sign does not change, so N processes with
batch B craft the same adversarial views as one with N*B (without ``random_start``, whose draws are per rank).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from sslcore.components.attack_configs import FGSMConfig, PGDConfig
from sslcore.components.dual_bn import auxiliary_batchnorm, frozen_running_stats
from sslcore.errors import SslcoreError
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo


class Attack:
    """Signed-gradient ascent on a loss of images, in pixel space, within an L-infinity ball of ``epsilon``."""

    def __init__(self, config: FGSMConfig | PGDConfig, mean: Sequence[float], std: Sequence[float]) -> None:
        self.config = config
        self.epsilon = config.epsilon
        self.steps = getattr(config, "steps", 1)
        self.step_size = getattr(config, "step_size", config.epsilon)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def perturb(self, images: Tensor, loss_of: Callable[[Tensor], Tensor]) -> Tensor:
        """Normalised ``images`` (B, C, H, W) -> normalised adversarial images (detached) that raise ``loss_of``."""
        mean, std = self.mean.to(images), self.std.to(images)
        clean = (images.detach() * std + mean).clamp(0, 1)
        pixels = clean
        if self.config.random_start:
            pixels = (clean + torch.empty_like(clean).uniform_(-self.epsilon, self.epsilon)).clamp(0, 1)
        for _ in range(self.steps):
            pixels = pixels.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(loss_of((pixels - mean) / std), pixels)
            pixels = pixels.detach() + self.step_size * grad.sign()
            pixels = torch.minimum(torch.maximum(pixels, clean - self.epsilon), clean + self.epsilon).clamp(0, 1)
        return ((pixels - mean) / std).detach()

    def adversarial_batch(self, method: Method, batch: Batch, info: StepInfo) -> Batch:
        """``batch`` with view ``into_view`` replaced by the adversarial version of view ``from_view``, crafted
        against ``method``'s own loss without touching its parameters' gradients or main running statistics."""
        config = self.config
        if max(config.from_view, config.into_view) >= len(batch.views):
            raise SslcoreError(
                f"[attack] from_view = {config.from_view}, into_view = {config.into_view}, but the batch has "
                f"{len(batch.views)} view(s)",
                hint="name views the method trains on (0-based)",
            )

        def loss_of(adversarial: Tensor) -> Tensor:
            return method(_replace(batch, config.into_view, adversarial), info).loss

        with adversarial_forward(method, crafting=True):
            adversarial = self.perturb(batch.views[config.from_view], loss_of)
        return _replace(batch, config.into_view, adversarial)


@contextlib.contextmanager
def adversarial_forward(method: nn.Module, *, crafting: bool) -> Iterator[None]:
    """Forwards through the auxiliary BatchNorms where ``method`` has them; while ``crafting``, every other
    BatchNorm keeps its running statistics (the twins update theirs, as the official code's ``adv=True`` forwards)."""
    with auxiliary_batchnorm(method), frozen_running_stats(method) if crafting else contextlib.nullcontext():
        yield


def with_adversarial_loss(
    method: Method, attack: Attack, batch: Batch, info: StepInfo, clean: MethodOutput
) -> MethodOutput:
    """``clean`` with the loss ``clean.loss + weight * adversarial loss`` (as Ho and Vasconcelos 2020 combine them, official
    ``main.py``: ``loss += args.alpha * criterion(...)``); only the clean forward's key-store writes are kept."""
    adversarial_batch = attack.adversarial_batch(method, batch, info)
    with adversarial_forward(method, crafting=False):
        adversarial = method(adversarial_batch, info)
    logs = {**clean.logs, "clean_loss": clean.loss.detach(), "adversarial_loss": adversarial.loss.detach()}
    return MethodOutput(clean.loss + attack.config.weight * adversarial.loss, logs=logs, writes=clean.writes)


def build_attack(parts: MethodParts) -> Attack:
    """The recipe's ``[attack]``, in the pixel space of its ``[views]`` (their ``mean`` and ``std``)."""
    views = parts.recipe.require("views", needed_by="[attack]")
    mean, std = getattr(views.config, "mean", None), getattr(views.config, "std", None)
    if mean is None or std is None:
        raise SslcoreError(
            f"[attack] works in pixel space and needs the views' normalisation, but [views] kind '{views.kind}' "
            "has no mean / std",
            where=parts.recipe.source,
            hint="use a view transform with mean and std (simclr)",
        )
    attack = parts.component("attack", mean=tuple(mean), std=tuple(std))
    views_per_image = getattr(views.config, "num_views", None)
    wanted = max(attack.config.from_view, attack.config.into_view)
    if views_per_image is not None and wanted >= views_per_image:
        raise SslcoreError(
            f"[attack] names view {wanted}, but [views] gives {views_per_image} view(s) per image",
            where=parts.recipe.source,
            hint="set from_view / into_view to views the method trains on (0-based)",
        )
    return attack


def _replace(batch: Batch, view: int, images: Tensor) -> Batch:
    views = list(batch.views)
    views[view] = images
    return Batch(views=views, index=batch.index, label=batch.label)


