"""Tests of the ``simclr`` method: Algorithm 1 step by step, the global-batch negatives over 2 processes, the
SimCLR v2 evaluation network, input checks, and the shipped recipes."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from sslcore import distributed
from sslcore.errors import SslcoreError
from sslcore.lookup import LookupMethod
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import (
    batch_of,
    build_method,
    build_recipe,
    modules_defined_by,
    run_distributed,
    tiny_host,
    training_step,
)
import sslcore_plugin_simclr
from sslcore_plugin_simclr import plugin as simclr_plugin

RECIPES = Path(simclr_plugin.__file__).parent / "recipes"
REPO_RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def make_host() -> PluginHost:
    return tiny_host("simclr", simclr_plugin)


def document(*, batch_norm: bool = True, num_layers: int = 2, temperature: float = 0.5, **method) -> dict:
    bn = {"batch_norm": True, "last_batch_norm": True, "last_batch_norm_affine": True, "last_batch_norm_center": False}
    return {
        "backbone": {"kind": "tiny", "width": 8, "batch_norm": batch_norm},
        "heads": {
            "projector": {"kind": "mlp", "num_layers": num_layers, "hidden_dim": 16, "out_dim": 8}
            | (bn if batch_norm else {})
        },
        "key_store": {"kind": "in_batch"},
        "loss": {"kind": "ntxent", "temperature": temperature},
        "method": {"kind": "simclr", **method},
    }


# --- (a) reference step: SimCLR Algorithm 1 written out ---------------------------------------------------------


def nt_xent_algorithm_1(z: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR Alg. 1 with explicit loops. ``z`` holds 2N projections, ``z[2k]`` and ``z[2k+1]`` the two views of
    sample k (the paper's 2k-1 and 2k, counted from 1)."""
    n2 = z.shape[0]
    s = [[torch.dot(z[i], z[j]) / (z[i].norm() * z[j].norm()) for j in range(n2)] for i in range(n2)]

    def ell(i: int, j: int) -> torch.Tensor:  # the paper's l(i, j)
        denominator = sum(torch.exp(s[i][k] / tau) for k in range(n2) if k != i)
        return -torch.log(torch.exp(s[i][j] / tau) / denominator)

    return sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(n2 // 2)) / n2


def test_three_steps_match_algorithm_1():
    torch.manual_seed(0)
    tau, n = 0.5, 6
    # float64, so that the two computations agree to rounding.
    method = build_method(document(temperature=tau), host=make_host()).double()
    f, g = copy.deepcopy(method.backbone), copy.deepcopy(method.encoder.projector)
    initial_conv = method.backbone.net[0].weight.detach().clone()
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9)
    reference_optimizer = torch.optim.SGD([*f.parameters(), *g.parameters()], lr=0.5, momentum=0.9)
    method.train()
    for step in range(3):
        x1, x2 = torch.randn(2, n, 3, 8, 8, dtype=torch.float64).unbind(0)
        info = StepInfo(step, 10, 5)
        loss = training_step(method, optimizer, batch_of(x1, x2), info).loss

        # Alg. 1: h = f(x), z = g(h) for all 2N augmented views, both views in one batch as the official code
        # (BatchNorm over the 2N views); then interleave to the paper's (2k-1, 2k) pairs.
        z = g(f(torch.cat([x1, x2])))
        z = torch.stack([z[k // 2] if k % 2 == 0 else z[n + k // 2] for k in range(2 * n)])
        # google-research/simclr objective.py returns loss_a + loss_b: twice Alg. 1's mean over the 2N views.
        reference = 2 * nt_xent_algorithm_1(z, tau)
        reference_optimizer.zero_grad()
        reference.backward()
        reference_optimizer.step()
        assert loss.item() == pytest.approx(reference.item(), abs=1e-10)
        assert loss.item() > 0
    for mine, theirs in ((method.backbone, f), (method.encoder.projector, g)):
        for (name, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=name)
    assert not torch.allclose(method.backbone.net[0].weight, initial_conv), "training did not move the weights"


# --- SimCLR v2: the evaluation network, and input checks -------------------------------------------------------


def test_evaluation_network_is_backbone_plus_first_projector_layer():
    torch.manual_seed(0)
    v1 = build_method(document(num_layers=3), host=make_host())
    assert v1.evaluation_network() is v1.backbone
    v2 = build_method(document(num_layers=3, eval_from_projector_layer=1), host=make_host())
    network = v2.evaluation_network()
    assert network[0] is v2.backbone and network[1] is v2.encoder.projector.layers[0]  # shared weights, not a copy
    v2.eval()
    x = torch.randn(5, 3, 8, 8)
    features = network(x)
    assert features.shape == (5, 16)  # the head's hidden width
    hidden = v2.encoder.projector.layers[0][0](v2.backbone(x))  # Linear, then BN (running statistics), then ReLU
    bn = v2.encoder.projector.layers[0][1]
    expected = torch.relu((hidden - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
    torch.testing.assert_close(features, expected)
    assert (features >= 0).all()


def test_eval_from_projector_layer_must_leave_the_output_layer():
    with pytest.raises(SslcoreError, match="eval_from_projector_layer = 2"):
        build_method(document(num_layers=2, eval_from_projector_layer=2), host=make_host())


def test_queue_key_store_swaps_in():
    """SimCLR no longer insists on in-batch keys: with a queue, each of the 2N queries has its other view as
    positive (with gradient) and the queue as it was before the step as negatives; all 2N keys are enqueued."""
    torch.manual_seed(0)
    tau, n = 0.5, 6
    method = build_method({**document(temperature=tau), "key_store": {"kind": "queue", "size": 64}},
                          host=make_host()).double()
    queue = method.stores[0]
    bank = queue.queue.detach().clone()
    x1, x2 = torch.randn(2, n, 3, 8, 8, dtype=torch.float64).unbind(0)
    # the loss of the first step, written out: one pass over both views (BatchNorm over the 2N)
    z = torch.nn.functional.normalize(copy.deepcopy(method).encoder(torch.cat([x1, x2])), dim=1)
    positive = torch.cat([z[n:], z[:n]])
    logits = torch.cat([(z * positive).sum(dim=1, keepdim=True), z @ torch.nn.functional.normalize(bank, dim=1).T], 1)
    # times 2: the ntxent loss returns the official loss_a + loss_b, twice the mean over the 2N queries
    expected = 2 * torch.nn.functional.cross_entropy(logits / tau, torch.zeros(2 * n, dtype=torch.long))
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9)
    losses = []
    for step in range(3):
        batch = batch_of(x1, x2) if step == 0 else batch_of(*torch.randn(2, n, 3, 8, 8, dtype=torch.float64))
        losses.append(training_step(method, optimizer, batch, StepInfo(step, 10, 5)).loss.item())
    assert losses[0] == pytest.approx(expected.item(), abs=1e-10)
    assert all(math.isfinite(loss) for loss in losses) and len(set(losses)) == 3
    assert int(queue.ptr) == int(queue.count) == 3 * 2 * n


def test_in_batch_key_store_without_gradient_swaps_in():
    """SimCLR no longer insists on gathering the keys with gradient: ``stop_gradient = true`` builds and trains."""
    torch.manual_seed(0)
    method = build_method({**document(), "key_store": {"kind": "in_batch", "stop_gradient": True}}, host=make_host())
    assert method.stores[0].stop_gradient
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9)
    losses = [
        training_step(method, optimizer, batch_of(*torch.randn(2, 4, 3, 8, 8)), StepInfo(step, 10, 5)).loss.item()
        for step in range(3)
    ]
    assert all(math.isfinite(loss) and loss > 0 for loss in losses)


def test_a_loss_that_does_not_fit_the_key_store_is_a_one_line_error():
    """``normalized_mse`` needs each query's own positive key; in-batch keys give its column in the bank."""
    method = build_method({**document(), "loss": {"kind": "normalized_mse"}}, host=make_host())
    misfit = r"\[loss\] 'normalized_mse' and \[key_store\] 'in_batch' do not fit"
    with pytest.raises(SslcoreError, match=misfit) as error:
        method(batch_of(*torch.randn(2, 4, 3, 8, 8)), StepInfo(0, 10, 5))
    assert "\n" not in str(error.value)


def test_rejects_other_than_two_views():
    method = build_method(document(), host=make_host())
    views = [torch.randn(4, 3, 8, 8) for _ in range(3)]
    with pytest.raises(SslcoreError, match="2 views per image, the batch has 3"):
        method(Batch(views=views, index=torch.arange(4)), StepInfo(0, 10, 5))


def test_plugin_holds_no_forward_of_its_own():
    """The plugin is a config class, a build function and recipes: the method is the core's look-up method."""
    assert type(build_method(document(), host=make_host())) is LookupMethod
    assert modules_defined_by(sslcore_plugin_simclr) == []


# --- (c) 2 processes with batch B each equal 1 process with batch 2B (global in-batch negatives) ----------------


def _train(rank: int, world: int, state: dict, views: torch.Tensor) -> dict:
    """3 SGD steps of SimCLR on this rank's slice of ``views`` (steps, 2, global batch, C, H, W)."""
    method = build_method(document(batch_norm=False), host=make_host())
    method.load_state_dict(state)
    model = DistributedDataParallel(method) if world > 1 else method
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    local = views.shape[2] // world
    losses = []
    for step in range(views.shape[0]):
        x1, x2 = (view[rank * local : (rank + 1) * local] for view in views[step])
        loss = training_step(method, optimizer, batch_of(x1, x2), StepInfo(step, 10, 5), model=model).loss
        losses.append(loss.item())
    return {"world": distributed.world_size(), "losses": losses, "state": method.state_dict()}


@pytest.mark.distributed
def test_two_processes_equal_one_process_with_the_global_batch():
    # BN-free network: without SyncBatchNorm (CUDA only) per-rank BN statistics would differ by design; the
    # negatives and their gradients are what this test checks.
    torch.manual_seed(0)
    state = build_method(document(batch_norm=False), host=make_host()).state_dict()
    views = torch.randn(3, 2, 8, 3, 8, 8)
    single = _train(0, 1, state, views)
    ranks = run_distributed(_train, state, views, world_size=2)
    assert [r["world"] for r in ranks] == [2, 2]
    for step, loss in enumerate(single["losses"]):
        assert (ranks[0]["losses"][step] + ranks[1]["losses"][step]) / 2 == pytest.approx(loss, abs=1e-5)
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank's loss is over its own anchors
    for name, tensor in single["state"].items():
        torch.testing.assert_close(ranks[0]["state"][name], tensor, atol=1e-5, rtol=0, msg=name)
        torch.testing.assert_close(ranks[1]["state"][name], tensor, atol=1e-5, rtol=0, msg=name)
    assert not torch.allclose(single["state"]["encoder.backbone.net.0.weight"], state["encoder.backbone.net.0.weight"])


# --- (b, d) the shipped recipes ---------------------------------------------------------------------------------


def test_smoke_recipe_builds_and_steps():
    torch.manual_seed(0)
    recipe, method = build_recipe("simclr_smoke", make_host())
    assert type(method) is LookupMethod and method.name == "simclr"
    x = torch.randn(2, recipe.run.batch_size, 3, 32, 32)
    output = method(batch_of(x[0], x[1]), StepInfo(0, 4, 4))
    assert output.loss.ndim == 0 and math.isfinite(output.loss.item()) and output.loss.item() > 0


def test_paper_recipes_resolve_with_the_papers_hyperparameters():
    host = make_host()
    v1 = resolve("simclr_resnet50", host)
    assert (v1.run.batch_size, v1.optimizer.kind, v1.optimizer.lr(4096)) == (4096, "lars", pytest.approx(4.8))
    assert v1.components["loss"].config.temperature == 0.1 and v1.optimizer.weight_decay == 1e-6
    assert v1.components["heads.projector"].config.num_layers == 2
    v2 = resolve("simclrv2_resnet50", host)
    assert v2.optimizer.lr(4096) == pytest.approx(6.4)  # 0.1 x sqrt(4096)
    assert v2.components["heads.projector"].config.num_layers == 3
    assert v2.components["method"].config.eval_from_projector_layer == 1
    cifar = resolve("simclr_cifar10", host)
    assert cifar.components["loss"].config.temperature == 0.5 and cifar.components["backbone"].config.cifar_stem


def test_v2_paper_recipe_builds_a_resnet50_with_a_3_layer_head():
    _, method = build_recipe("simclrv2_resnet50", make_host())
    assert method.backbone.num_features == 2048
    assert [block[0].out_features for block in method.encoder.projector.layers] == [2048, 2048, 128]
    network = method.evaluation_network()
    assert network[-1] is method.encoder.projector.layers[0]


def test_repository_copy_of_the_paper_recipe_is_identical():
    if not REPO_RECIPES.is_dir():
        pytest.skip("not running from the sslcore repository (no recipes/ folder at its root)")
    assert (REPO_RECIPES / "simclr_resnet50.toml").read_text() == (RECIPES / "simclr_resnet50.toml").read_text()


@pytest.mark.slow
def test_engine_runs_the_smoke_recipe(tmp_path):
    from sslcore.engine.trainer import train_from_recipe

    host = PluginHost(autoload=False, extra_plugins=[("simclr", simclr_plugin)])
    summary = train_from_recipe("simclr_smoke", [f"run.output_dir={tmp_path}"], host=host)
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    assert "knn_top1" in summary
    assert (tmp_path / "simclr_smoke" / "backbone.safetensors").is_file()


def test_recipes_use_the_official_lars_and_offer_the_current_readme():
    host = PluginHost()
    for name in ("simclr_resnet50", "simclr_cifar10", "simclrv2_resnet50"):
        assert resolve(name, host).optimizer.trust_ratio == "update_norm"  # lars_optimizer.py: eeta ||w|| / ||g + wd w||
    first = resolve("simclr_resnet50", host).optimizer
    # the header's overrides of the current README (244e712): --learning_rate=0.075 --learning_rate_scaling=sqrt
    current = resolve("simclr_resnet50", host, ["optimizer.base_lr=0.075", "optimizer.lr_scaling=sqrt",
                                                 "optimizer.reference_batch=1", "optimizer.weight_decay=1e-4"]).optimizer
    assert first.lr(4096) == pytest.approx(current.lr(4096)) == pytest.approx(4.8)  # equal at the paper's batch
    assert current.lr(256) == pytest.approx(1.2) and first.lr(256) == pytest.approx(0.3)
    text = (RECIPES / "simclr_resnet50.toml").read_text()
    assert "optimizer.base_lr=0.075 optimizer.lr_scaling=sqrt" in text and "optimizer.weight_decay=1e-4" in text
