"""One training step in the order of the method contract (:mod:`sslcore.method`), shared by the engine and tests."""

from __future__ import annotations

import contextlib
import hashlib
from typing import TYPE_CHECKING

import torch
from torch import nn

from sslcore.components.attacks import Attack, with_adversarial_loss
from sslcore.method import Batch, Method, MethodOutput, StepInfo

if TYPE_CHECKING:
    from accelerate import Accelerator


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of every global random generator for optimizer step ``step`` (0-based) on process ``rank``.

    A hash of the three numbers, below 2**32 (numpy's limit): neighbouring steps and ranks get unrelated streams,
    and a resumed run draws the same numbers at step ``step`` as an uninterrupted one.
    """
    digest = hashlib.blake2b(f"{seed}:{step}:{rank}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def train_step(
    method: Method,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    info: StepInfo,
    *,
    model: nn.Module | None = None,
    accelerator: Accelerator | None = None,
    grad_clip: float | None = None,
    attack: Attack | None = None,
) -> MethodOutput:
    """One optimizer step of ``method`` on ``batch``; returns the forward's output. Nothing waits on the host.

    In order: the targets declared ``before_forward`` move; the forward through ``model`` (the method as wrapped
    for DDP; the method itself when None), under ``accelerator``'s autocast when given, plus the adversarial loss of
    ``attack`` when given (:func:`sslcore.components.attacks.with_adversarial_loss`); backward (through the
    accelerator: loss scaling, then unscaling for fp16); ``method.before_optimizer_step``; clipping of the global
    gradient norm to ``grad_clip``; the optimizer step and ``zero_grad``; the targets declared ``after_step``
    move; the forward's key-store writes, in order; ``method.after_optimizer_step``.
    """
    network = method if model is None else model
    followers = method.followers()
    for follower in followers:
        if follower.when == "before_forward":
            follower.update(info.step)
    with accelerator.autocast() if accelerator is not None else contextlib.nullcontext():
        output = network(batch, info)
        if attack is not None:  # the recipe's [attack]: clean + weight * adversarial loss
            output = with_adversarial_loss(method, attack, batch, info, output)
    if accelerator is None:
        output.loss.backward()
    else:
        accelerator.backward(output.loss)
        accelerator.unscale_gradients()  # fp16: methods and clipping see true gradients (a no-op otherwise)
    method.before_optimizer_step(info)
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(network.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    for follower in followers:
        if follower.when == "after_step":
            follower.update(info.step)
    for write in output.writes:
        write.apply()
    method.after_optimizer_step(info)
    return output
