"""Tests of the ``byol`` method: the BYOL update (online step, EMA target) step by step, input checks, and the
shipped recipes."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from sslcore.engine.optim import build_optimizer
from sslcore.errors import SslcoreError
from sslcore.lookup import LookupMethod
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.testing import batch_of, build_method, build_recipe, modules_defined_by, tiny_host, training_step
import sslcore_plugin_byol
from sslcore_plugin_byol import plugin as byol_plugin

RECIPES = Path(byol_plugin.__file__).parent / "recipes"
REPO_RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def make_host() -> PluginHost:
    return tiny_host("byol", byol_plugin)


def mlp(out_dim: int = 8) -> dict:
    return {"kind": "mlp", "num_layers": 2, "hidden_dim": 16, "out_dim": out_dim, "batch_norm": True, "bias": False}


def document(*, base_momentum: float = 0.9, predictor_out: int = 8) -> dict:
    return {
        "backbone": {"kind": "tiny", "width": 8},
        "heads": {"projector": mlp(), "predictor": mlp(predictor_out)},
        "target_updater": {"kind": "ema", "base_momentum": base_momentum, "schedule": "cosine", "buffers": "own"},
        "loss": {"kind": "normalized_mse"},
        "method": {"kind": "byol"},
    }


# --- (a) reference step: BYOL's update written out (sec. 3.1, Eq. 2, official byol_experiment.py) -------------


def normalized_mse(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Eq. 2: || p / ||p|| - z / ||z|| ||^2, averaged over the batch."""
    return ((p / p.norm(dim=1, keepdim=True) - z / z.norm(dim=1, keepdim=True)) ** 2).sum(dim=1).mean()


def test_three_steps_match_the_byol_update():
    torch.manual_seed(0)
    total_steps, tau_base, n = 10, 0.9, 6
    # float64, so that the two computations agree to rounding (BN over 6 samples amplifies float32 noise).
    method = build_method(document(base_momentum=tau_base), host=make_host(), total_steps=total_steps).double()
    f, g, q = (copy.deepcopy(m) for m in (method.encoder.backbone, method.encoder.projector, method.predictor))
    f_xi, g_xi = copy.deepcopy(f), copy.deepcopy(g)  # the target starts as a copy of the online network
    for (name, a), (_, b) in zip(method.target.state_dict().items(), method.encoder.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)
    online = [p for p in method.parameters() if p.requires_grad]
    assert len(online) == len([*f.parameters(), *g.parameters(), *q.parameters()])  # the target is not trained
    optimizer = torch.optim.SGD(online, lr=0.5, momentum=0.9)
    reference_optimizer = torch.optim.SGD([*f.parameters(), *g.parameters(), *q.parameters()], lr=0.5, momentum=0.9)
    method.train()
    for step in range(3):
        x1, x2 = torch.randn(2, n, 3, 8, 8, dtype=torch.float64).unbind(0)
        info = StepInfo(step, total_steps, 5)
        loss = training_step(method, optimizer, batch_of(x1, x2), info).loss

        # Online: q(g(f(v))) for each view; target: g_xi(f_xi(v')) without gradient (training-mode BN).
        p1, p2 = q(g(f(x1))), q(g(f(x2)))
        with torch.no_grad():
            z1, z2 = g_xi(f_xi(x1)), g_xi(f_xi(x2))
        reference = normalized_mse(p1, z2) + normalized_mse(p2, z1)  # L + L~
        reference_optimizer.zero_grad()
        reference.backward()
        reference_optimizer.step()
        # sec. 3.2: tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2; xi <- tau xi + (1 - tau) theta.
        tau = 1 - (1 - tau_base) * (math.cos(math.pi * step / total_steps) + 1) / 2
        with torch.no_grad():
            for target, source in ((f_xi, f), (g_xi, g)):
                for xi, theta in zip(target.parameters(), source.parameters(), strict=True):
                    xi.copy_(tau * xi + (1 - tau) * theta)
        assert loss.item() == pytest.approx(reference.item(), abs=1e-10)
    pairs = [
        (method.encoder.backbone, f), (method.encoder.projector, g), (method.predictor, q),
        (method.target.backbone, f_xi), (method.target.projector, g_xi),
    ]
    for mine, theirs in pairs:
        for (name, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=name)
    online_conv, target_conv = method.encoder.backbone.net[0].weight, method.target.backbone.net[0].weight
    assert not torch.allclose(online_conv, target_conv), "the target should lag behind the online network"
    assert method.backbone is method.encoder.backbone


# --- input checks ------------------------------------------------------------------------------------------------


def test_predictor_must_output_the_projection_width():
    with pytest.raises(SslcoreError, match="predictor gives 4 dimensions but the projector 8"):
        build_method(document(predictor_out=4), host=make_host())


def test_rejects_other_than_two_views():
    method = build_method(document(), host=make_host())
    with pytest.raises(SslcoreError, match="2 views per image, the batch has 1"):
        method(Batch(views=[torch.randn(4, 3, 8, 8)], index=torch.arange(4)), StepInfo(0, 10, 5))


def test_plugin_holds_no_forward_of_its_own():
    """The plugin is a config class, a build function and recipes: the method is the core's look-up method."""
    assert type(build_method(document(), host=make_host())) is LookupMethod
    assert modules_defined_by(sslcore_plugin_byol) == []


# --- (b, d) the shipped recipes ---------------------------------------------------------------------------------


def test_smoke_recipe_builds_and_steps():
    torch.manual_seed(0)
    recipe, method = build_recipe("byol_smoke", make_host())
    assert type(method) is LookupMethod and method.name == "byol"
    x = torch.randn(2, recipe.run.batch_size, 3, 32, 32)
    output = method(batch_of(x[0], x[1]), StepInfo(0, 4, 4))
    assert output.loss.ndim == 0 and 0 < output.loss.item() <= 8  # each direction lies in [0, 4]


def test_paper_recipe_resolves_with_the_papers_hyperparameters():
    recipe, method = build_recipe("byol_resnet50", make_host())
    assert (recipe.run.batch_size, recipe.run.epochs, recipe.optimizer.kind) == (4096, 1000, "lars")
    assert recipe.optimizer.lr(4096) == pytest.approx(3.2) and recipe.optimizer.weight_decay == 1.5e-6
    ema = recipe.components["target_updater"].config
    assert (ema.base_momentum, ema.schedule, ema.final_momentum) == (0.996, "cosine", 1.0)
    assert [block[0].out_features for block in method.encoder.projector.layers] == [4096, 256]
    assert [block[0].out_features for block in method.predictor.layers] == [4096, 256]
    optimizer = build_optimizer(method, recipe.optimizer, recipe.run.batch_size)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in [*method.encoder.parameters(), *method.predictor.parameters()]}
    no_decay = [p for group in optimizer.param_groups if group["weight_decay"] == 0 for p in group["params"]]
    assert no_decay and all(p.ndim == 1 for p in no_decay)  # biases and BN parameters excluded


def test_repository_copy_of_the_paper_recipe_is_identical():
    if not REPO_RECIPES.is_dir():
        pytest.skip("not running from the sslcore repository (no recipes/ folder at its root)")
    assert (REPO_RECIPES / "byol_resnet50.toml").read_text() == (RECIPES / "byol_resnet50.toml").read_text()


@pytest.mark.slow
def test_engine_runs_the_smoke_recipe(tmp_path):
    from sslcore.engine.trainer import train_from_recipe

    host = PluginHost(autoload=False, extra_plugins=[("byol", byol_plugin)])
    summary = train_from_recipe("byol_smoke", [f"run.output_dir={tmp_path}"], host=host)
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    assert "knn_top1" in summary
    assert (tmp_path / "byol_smoke" / "backbone.safetensors").is_file()
