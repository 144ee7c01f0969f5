"""The engine's training step: the order of the method contract, one function for the engine and tests, the seed."""

from __future__ import annotations

import torch
from torch import nn

import sslcore
import sslcore.testing
from sslcore.components.target_updaters import CopyUpdater
from sslcore.engine.step import step_seed, train_step
from sslcore.method import Batch, KeyWrite, Method, MethodOutput, StepInfo


class Recorder(CopyUpdater):
    def __init__(self, calls: list[str], name: str) -> None:
        self.calls, self.name = calls, name

    def update(self, online: nn.Module, target: nn.Module, step: int) -> None:
        self.calls.append(f"{self.name} {step}")


class Store(nn.Module):
    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    def write(self, keys: torch.Tensor, *, index: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        self.calls.append(f"write {keys.requires_grad} {index.tolist()}")


class Ordered(Method):
    """Records every call the step makes to it, its targets, its store and its optimizer."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls
        self.backbone = nn.Linear(2, 2)
        self.early = self.follow(self.backbone, Recorder(calls, "before_forward"), when="before_forward")
        self.late = self.follow(self.backbone, Recorder(calls, "after_step"), when="after_step")
        self.store = Store(calls)

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:
        self.calls.append("forward")
        out = self.backbone(batch.views[0])
        return MethodOutput(100 * out.sum(), writes=[KeyWrite(self.store, out, index=batch.index)])

    def before_optimizer_step(self, step: StepInfo) -> None:
        self.calls.append(f"before_optimizer_step {self.backbone.weight.grad.norm() > 1}")

    def after_optimizer_step(self, step: StepInfo) -> None:
        self.calls.append("after_optimizer_step")


class RecordingSGD(torch.optim.SGD):
    def __init__(self, method: Ordered) -> None:
        super().__init__(method.backbone.parameters(), lr=0.1)
        self.method = method

    def step(self, closure=None):
        grads = [p.grad for p in self.method.backbone.parameters()]
        self.method.calls.append(f"optimizer.step {float(torch.cat([g.flatten() for g in grads]).norm()):.3f}")
        return super().step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.method.calls.append("zero_grad")
        super().zero_grad(set_to_none)


def test_one_step_runs_the_contract_in_order():
    calls: list[str] = []
    method = Ordered(calls)
    batch = Batch(views=[torch.ones(3, 2)], index=torch.tensor([4, 5, 6]))
    output = train_step(method, RecordingSGD(method), batch, StepInfo(7, 10, 5), grad_clip=0.5)
    assert calls == [
        "before_forward 7",
        "forward",
        "before_optimizer_step True",  # the true (unclipped) gradient
        "optimizer.step 0.500",  # clipped to grad_clip
        "zero_grad",
        "after_step 7",
        "write False [4, 5, 6]",  # detached keys
        "after_optimizer_step",
    ]
    assert output.loss.requires_grad and all(p.grad is None for p in method.parameters())


def test_the_engine_and_the_tests_share_one_step():
    assert sslcore.testing.training_step is train_step is sslcore.train_step


def test_step_seed_is_a_pure_function_of_seed_step_and_rank():
    seeds = [step_seed(seed, step, rank) for seed in range(3) for step in range(100) for rank in range(4)]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**32 for s in seeds)
    assert seeds == [step_seed(seed, step, rank) for seed in range(3) for step in range(100) for rank in range(4)]
    # Fixed for good: a run resumed by a later version draws what the first version would have drawn.
    assert [step_seed(0, 0, 0), step_seed(1, 2, 3)] == [3547282128, 3185898097]
