"""Attacks: FGSM / PGD raise the method's own loss within epsilon in pixel space, leave parameter gradients and the
main BatchNorm statistics alone, add ``weight * adversarial loss`` in the engine's step, and craft on 2 gloo
processes with batch B the views one process crafts with batch 2B."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sslcore.components.attacks import Attack, FGSMConfig, PGDConfig, build_attack
from sslcore.components.dual_bn import add_auxiliary_batchnorm, frozen_running_stats
from sslcore.components.key_stores import InBatchKeys
from sslcore.components.losses import NTXentLoss
from sslcore.engine.step import train_step
from sslcore.errors import SslcoreError
from sslcore.lookup import LookupDesign, LookupMethod
from sslcore.method import Batch, StepInfo
from sslcore.testing import TinyConfig, TinyNet, run_distributed

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
INFO = StepInfo(step=0, total_steps=1, steps_per_epoch=1)


def simclr_like(*, batch_norm: bool = True, dual: bool = False) -> LookupMethod:
    """SimCLR's look-up (both views in one pass, NT-Xent over the global batch) on a tiny conv net."""
    backbone = TinyNet(TinyConfig(width=8, batch_norm=batch_norm))
    if dual:
        add_auxiliary_batchnorm(backbone, 0.5)
    design = LookupDesign(pairs=((0, 1), (1, 0)), joint=True, keys_from="online", one_pass=True)
    return LookupMethod(
        "simclr_like",
        design,
        encoder=nn.Sequential(backbone, nn.Linear(8, 8)),
        predictor=None,
        updater=None,
        stores=[InBatchKeys(8)],
        loss=NTXentLoss(temperature=0.5),
        combination="test",
    )


def batch_of_pixels(size: int, seed: int = 0) -> tuple[Batch, torch.Tensor]:
    """A two-view batch of normalised images and the pixels (in [0, 1]) of view 0."""
    generator = torch.Generator().manual_seed(seed)
    pixels = [torch.rand(size, 3, 8, 8, generator=generator) for _ in range(2)]
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return Batch(views=[(p - mean) / std for p in pixels], index=torch.arange(size)), pixels[0]


def attack_of(kind: str, **options) -> Attack:
    config = (
        FGSMConfig(epsilon=0.03, **options)
        if kind == "fgsm"
        else PGDConfig(epsilon=0.03, steps=3, step_size=0.01, **options)
    )
    return Attack(config, mean=MEAN, std=STD)


def pixels_of(images: torch.Tensor) -> torch.Tensor:
    return images * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


def loss_with(method: LookupMethod, batch: Batch, second: torch.Tensor) -> float:
    with torch.no_grad(), frozen_running_stats(method):
        return method(Batch(views=[batch.views[0], second], index=batch.index), INFO).loss.item()


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
def test_the_attack_raises_the_loss_and_stays_within_epsilon(kind):
    torch.manual_seed(0)
    method = simclr_like()
    batch, clean = batch_of_pixels(6)
    adversarial = attack_of(kind).adversarial_batch(method, batch, INFO)
    moved = pixels_of(adversarial.views[1]) - clean
    assert moved.abs().max() <= 0.03 + 1e-6 and moved.abs().max() > 0.02
    assert pixels_of(adversarial.views[1]).min() >= -1e-6 and pixels_of(adversarial.views[1]).max() <= 1 + 1e-6
    assert torch.equal(adversarial.views[0], batch.views[0])  # view 0 is kept; the adversarial view replaces view 1
    # From the starting point (view 0 paired with itself) the loss rises.
    assert loss_with(method, batch, adversarial.views[1]) > loss_with(method, batch, batch.views[0]) + 1e-3


@pytest.mark.parametrize("dual", [False, True])
def test_the_attack_leaves_parameter_gradients_and_main_statistics(dual):
    torch.manual_seed(0)
    method = simclr_like(dual=dual)
    batch, _ = batch_of_pixels(6)
    method(batch, INFO).loss.backward()
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in method.named_parameters()}
    state = {name: t.clone() for name, t in method.state_dict().items()}
    attack_of("pgd").adversarial_batch(method, batch, INFO)
    for name, parameter in method.named_parameters():  # the twins' parameters keep no gradient at all
        assert parameter.grad is None if grads[name] is None else torch.equal(parameter.grad, grads[name]), name
    after = method.state_dict()
    main = [name for name in state if ".aux." not in name]
    assert all(torch.equal(after[name], state[name]) for name in main)
    twins = [name for name in state if ".aux.running_mean" in name]
    assert len(twins) == (1 if dual else 0)
    assert all(not torch.equal(after[name], state[name]) for name in twins)  # the twins saw the adversarial forward


def test_the_step_minimises_clean_plus_weighted_adversarial_loss():
    torch.manual_seed(0)
    method = simclr_like(dual=True)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.0)
    batch, _ = batch_of_pixels(6)
    output = train_step(method, optimizer, batch, INFO, attack=attack_of("fgsm", weight=0.5))
    logs = output.logs
    assert torch.allclose(output.loss, logs["clean_loss"] + 0.5 * logs["adversarial_loss"])
    assert logs["adversarial_loss"] > 0 and not torch.equal(logs["adversarial_loss"], logs["clean_loss"])


def test_a_view_the_batch_lacks_is_an_error():
    with pytest.raises(SslcoreError, match=r"into_view = 2, but the batch has 2 view"):
        attack_of("fgsm", into_view=2).adversarial_batch(simclr_like(), batch_of_pixels(2)[0], INFO)


def _craft(rank: int, world: int, state: dict, views: list[torch.Tensor]) -> dict:
    method = simclr_like(batch_norm=False).double()
    method.load_state_dict(state)
    rows = slice(rank * 3, (rank + 1) * 3)
    batch = Batch(views=[view[rows] for view in views], index=torch.arange(3))
    adversarial = attack_of("pgd", random_start=False).adversarial_batch(method, batch, INFO)
    return {"world": torch.distributed.get_world_size(), "adversarial": adversarial.views[1]}


def test_two_processes_craft_the_views_of_one_process_with_the_global_batch():
    torch.manual_seed(0)
    method = simclr_like(batch_norm=False).double()
    batch, _ = batch_of_pixels(6)
    views = [view.double() for view in batch.views]
    single = attack_of("pgd", random_start=False).adversarial_batch(method, Batch(views=views, index=batch.index), INFO)
    results = run_distributed(_craft, method.state_dict(), views)
    assert [result["world"] for result in results] == [2, 2]
    crafted = torch.cat([result["adversarial"] for result in results])
    assert not torch.equal(single.views[1], views[0])
    torch.testing.assert_close(crafted, single.views[1], rtol=0, atol=1e-12)


def test_views_without_normalisation_are_a_one_line_error():
    views = SimpleNamespace(kind="toy", config=SimpleNamespace())
    parts = SimpleNamespace(recipe=SimpleNamespace(require=lambda table, needed_by: views, source="recipe.toml"))
    with pytest.raises(SslcoreError, match=r"needs the views' normalisation, but \[views\] kind 'toy' has no mean"):
        build_attack(parts)


def test_an_attack_on_a_view_the_recipe_lacks_is_a_one_line_error():
    views = SimpleNamespace(kind="simclr", config=SimpleNamespace(mean=MEAN, std=STD, num_views=2))
    recipe = SimpleNamespace(require=lambda table, needed_by: views, source="recipe.toml")
    parts = SimpleNamespace(recipe=recipe, component=lambda kind, **runtime: attack_of("fgsm", into_view=2))
    with pytest.raises(SslcoreError, match=r"names view 2, but \[views\] gives 2 view"):
        build_attack(parts)
