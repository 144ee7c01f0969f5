"""Tests of the ``simsiam`` method: Algorithm 1 step by step, the stop-gradient target without a second forward,
the predictor's fixed learning rate, input checks, and the shipped recipes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sslcore_plugin_simsiam
from sslcore.engine.optim import build_optimizer
from sslcore.engine.settings import OptimizerSettings
from sslcore.errors import SslcoreError
from sslcore.lookup import LookupMethod
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.testing import batch_of, build_method, build_recipe, modules_defined_by, tiny_host, training_step
from sslcore_plugin_simsiam import plugin as simsiam_plugin


def make_host() -> PluginHost:
    return tiny_host("simsiam", simsiam_plugin)


def document(*, target_updater: dict | None = None, predictor_out: int = 8) -> dict:
    return {
        "backbone": {"kind": "tiny", "width": 8},
        "heads": {
            "projector": {"kind": "mlp", "num_layers": 3, "hidden_dim": 16, "out_dim": 8, "batch_norm": True,
                          "last_batch_norm": True},
            "predictor": {"kind": "mlp", "num_layers": 2, "hidden_dim": 4, "out_dim": predictor_out,
                          "batch_norm": True},
        },
        "target_updater": target_updater or {"kind": "stop_grad"},
        "loss": {"kind": "negative_cosine"},
        "method": {"kind": "simsiam"},
    }


# --- (a) reference step: SimSiam Algorithm 1 written out --------------------------------------------------------


def D(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Alg. 1: negative cosine similarity, with the stop-gradient on z."""
    z = z.detach()
    p = F.normalize(p, dim=1)
    z = F.normalize(z, dim=1)
    return -(p * z).sum(dim=1).mean()


def test_three_steps_match_algorithm_1():
    torch.manual_seed(0)
    n = 6
    # float64, so that the two computations agree to rounding.
    method = build_method(document(), host=make_host()).double()
    f, h = copy.deepcopy(method.encoder), copy.deepcopy(method.predictor)
    initial_conv = method.backbone.net[0].weight.detach().clone()
    assert [p for p in method.parameters()] == [*method.encoder.parameters(), *method.predictor.parameters()]
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    reference_optimizer = torch.optim.SGD([*f.parameters(), *h.parameters()], lr=0.5, momentum=0.9, weight_decay=1e-4)
    method.train()
    for step in range(3):
        x1, x2 = torch.randn(2, n, 3, 8, 8, dtype=torch.float64).unbind(0)
        info = StepInfo(step, 10, 5)
        loss = training_step(method, optimizer, batch_of(x1, x2), info).loss

        z1, z2 = f(x1), f(x2)  # projections, n-by-d
        p1, p2 = h(z1), h(z2)  # predictions, n-by-d
        reference = D(p1, z2) / 2 + D(p2, z1) / 2  # loss
        reference_optimizer.zero_grad()
        reference.backward()  # back-propagate
        reference_optimizer.step()  # SGD update
        assert loss.item() == pytest.approx(reference.item(), abs=1e-10)
        assert -1 <= loss.item() <= 1
    for mine, theirs in ((method.encoder, f), (method.predictor, h)):
        for (name, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=name)
    assert not torch.allclose(method.backbone.net[0].weight, initial_conv), "training did not move the weights"


def test_stop_grad_target_reuses_the_encoder_pass():
    # Official builder.py returns z.detach(): the encoder runs once per view, so BN statistics move once per view.
    method = build_method(document(), host=make_host())
    calls = []
    method.encoder.register_forward_hook(lambda *_: calls.append(1))
    method.train()
    loss = method(batch_of(torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)), StepInfo(0, 10, 5)).loss
    assert len(calls) == 2
    assert int(method.backbone.net[1].num_batches_tracked) == 2
    assert list(method.state_dict()) == [*("encoder." + k for k in method.encoder.state_dict()),
                                         *("predictor." + k for k in method.predictor.state_dict())]
    loss.backward()
    assert all(p.grad is not None for p in method.parameters())


def test_momentum_target_runs_a_separate_network():
    # With an `ema` target the method is the paper's "SimSiam with a momentum encoder" (sec. 6.2).
    torch.manual_seed(0)
    method = build_method(document(target_updater={"kind": "ema", "base_momentum": 0.5}), host=make_host())
    calls = []
    method.target.register_forward_hook(lambda *_: calls.append(1))
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    before = method.target.backbone.net[0].weight.clone()
    info = StepInfo(0, 10, 5)
    # The engine's step: forward, backward, optimizer step, then the `after_step` target moves.
    training_step(method, optimizer, batch_of(torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)), info)
    assert len(calls) == 2
    expected = 0.5 * before + 0.5 * method.encoder.backbone.net[0].weight
    torch.testing.assert_close(method.target.backbone.net[0].weight, expected)


def test_predictor_keeps_a_fixed_learning_rate():
    method = build_method(document(), host=make_host())
    settings = OptimizerSettings(kind="sgd", base_lr=0.05, weight_decay=1e-4, exclude_bias_and_norm=False,
                                 fixed_lr_prefixes=("predictor.",))
    optimizer = build_optimizer(method, settings, batch_size=512)
    fixed = {id(p) for g in optimizer.param_groups if g["fixed_lr"] for p in g["params"]}
    assert fixed == {id(p) for p in method.predictor.parameters()}
    assert all(g["weight_decay"] == 1e-4 for g in optimizer.param_groups)


def test_plugin_holds_no_forward_of_its_own():
    """The plugin is a config class, a build function and recipes: the method is the core's look-up method."""
    method = build_method(document(), host=make_host())
    assert type(method) is LookupMethod
    assert modules_defined_by(sslcore_plugin_simsiam) == []


# --- input checks ------------------------------------------------------------------------------------------------


def test_predictor_must_output_the_projection_width():
    with pytest.raises(SslcoreError, match="predictor gives 4 dimensions but the projector 8"):
        build_method(document(predictor_out=4), host=make_host())


def test_rejects_other_than_two_views():
    method = build_method(document(), host=make_host())
    with pytest.raises(SslcoreError, match="trains on 2 views per image, the batch has 3"):
        method(Batch(views=[torch.randn(4, 3, 8, 8)] * 3, index=torch.arange(4)), StepInfo(0, 10, 5))


# --- (b, d) the shipped recipes ---------------------------------------------------------------------------------


def test_smoke_recipe_builds_and_steps():
    torch.manual_seed(0)
    recipe, method = build_recipe("simsiam_smoke", make_host())
    assert isinstance(method, LookupMethod)
    x = torch.randn(2, recipe.run.batch_size, 3, 32, 32)
    output = method(batch_of(x[0], x[1]), StepInfo(0, 4, 4))
    assert output.loss.ndim == 0 and -1 <= output.loss.item() <= 1


def test_paper_recipe_resolves_with_the_papers_hyperparameters():
    recipe, method = build_recipe("simsiam_resnet50", make_host())
    assert (recipe.run.batch_size, recipe.run.epochs, recipe.optimizer.kind) == (512, 100, "sgd")
    assert recipe.optimizer.lr(512) == pytest.approx(0.1) and recipe.optimizer.weight_decay == 1e-4
    assert [block[0].out_features for block in method.encoder.projector.layers] == [2048, 2048, 2048]
    assert [block[0].out_features for block in method.predictor.layers] == [512, 2048]
    output_bn = method.encoder.projector.layers[-1][-1]
    assert isinstance(output_bn, nn.BatchNorm1d) and not output_bn.affine  # BatchNorm1d(dim, affine=False)
    optimizer = build_optimizer(method, recipe.optimizer, recipe.run.batch_size)
    fixed = {id(p) for g in optimizer.param_groups if g["fixed_lr"] for p in g["params"]}
    assert fixed == {id(p) for p in method.predictor.parameters()}
    assert all(g["weight_decay"] == 1e-4 for g in optimizer.param_groups)  # on every parameter, as official


@pytest.mark.slow
def test_engine_runs_the_smoke_recipe(tmp_path):
    from sslcore.engine.trainer import train_from_recipe

    host = PluginHost(autoload=False, extra_plugins=[("simsiam", simsiam_plugin)])
    summary = train_from_recipe("simsiam_smoke", [f"run.output_dir={tmp_path}"], host=host)
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    assert "knn_top1" in summary
    assert (tmp_path / "simsiam_smoke" / "backbone.safetensors").is_file()
