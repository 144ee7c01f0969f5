"""SwAV: reference steps against the official training loop, 2 processes, resume, recipes, engine."""

from __future__ import annotations

import copy
import json
import math
import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sslcore_plugin_swav.plugin as swav_plugin
from sslcore import distributed
from sslcore.components.heads import MLPHead, MLPHeadConfig, Prototypes
from sslcore.components.key_stores import Queue
from sslcore.components.losses import SoftCrossEntropyLoss
from sslcore.errors import SslcoreError
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import (
    TinyConfig,
    TinyNet,
    batch_of,
    build_method,
    run_distributed,
    single_thread,
    tiny_host,
    training_step,
)
from sslcore_plugin_swav import SwAV, SwAVConfig, multicrop_forward

WIDTH, HIDDEN, DIM, K = 6, 10, 4, 5  # backbone width, projector hidden width, embedding width, prototypes
B = 4  # samples per batch (per process in the distributed test)
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, which only contend with parallel test runs."""
    with single_thread():
        yield


def host() -> PluginHost:
    return tiny_host("swav", swav_plugin)


def swav_host() -> PluginHost:
    return PluginHost(autoload=False, extra_plugins=[("swav", swav_plugin)])


def document(*, queue: int | None = None, temperature: float = 0.1, **method) -> dict:
    doc = {
        "method": {"kind": "swav", **method},
        "backbone": {"kind": "tiny", "width": WIDTH},
        "heads": {
            "projector": {"kind": "mlp", "num_layers": 2, "hidden_dim": HIDDEN, "out_dim": DIM, "batch_norm": True},
            "prototypes": {"kind": "prototypes", "num_prototypes": K},
        },
        "loss": {"kind": "soft_cross_entropy", "temperature": temperature},
    }
    if queue is not None:
        doc["key_store"] = {"kind": "queue", "size": queue, "sharding": "sharded", "init": "zeros"}
    return doc


def make_swav(seed: int = 0, *, steps_per_epoch: int = 1, **kwargs) -> SwAV:
    """SwAV built from a recipe document through the plugin's factory."""
    torch.manual_seed(seed)
    return build_method(document(**kwargs), host=host(), total_steps=4, steps_per_epoch=steps_per_epoch)


def crops(seed: int, *, globals_: int = 2, locals_: int = 3, batch: int = B) -> list[torch.Tensor]:
    """Global crops of 16 px then local crops of 8 px, as multi-crop delivers them."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, 16, 16, generator=generator) for _ in range(globals_)] + [
        torch.randn(batch, 3, 8, 8, generator=generator) for _ in range(locals_)
    ]


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in params if p.requires_grad], lr=0.5, momentum=0.9, weight_decay=1e-4)


def train(model: nn.Module, method: SwAV, steps: list[list[torch.Tensor]], *, steps_per_epoch: int = 1,
          first_step: int = 0, optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
    """The engine's loop, forward through ``model`` (possibly DDP); returns the losses."""
    optimizer = optimizer or sgd(method.parameters())
    losses = []
    for offset, views in enumerate(steps):
        info = StepInfo(first_step + offset, 100, steps_per_epoch)
        losses.append(training_step(method, optimizer, batch_of(*views), info, model=model).loss.detach())
    return losses


# -- the reference: the official main_swav.py training loop and src/resnet50.py, written out plainly ----------
class ReferenceModel(nn.Module):
    """src/resnet50.py ResNet with a tiny trunk: forward_backbone, forward_head, the multi-crop forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, WIDTH, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(WIDTH)
        self.projection_head = nn.Sequential(
            nn.Linear(WIDTH, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(inplace=True), nn.Linear(HIDDEN, DIM)
        )
        self.prototypes = nn.Linear(DIM, K, bias=False)

    def forward_backbone(self, x):
        return F.relu(self.bn(self.conv(x))).mean(dim=(2, 3))

    def forward_head(self, x):
        x = self.projection_head(x)
        x = nn.functional.normalize(x, dim=1, p=2)
        return x, self.prototypes(x)

    def forward(self, inputs):
        idx_crops = torch.cumsum(
            torch.unique_consecutive(torch.tensor([inp.shape[-1] for inp in inputs]), return_counts=True)[1], 0
        )
        start_idx = 0
        for end_idx in idx_crops:
            _out = self.forward_backbone(torch.cat(inputs[start_idx:end_idx]))
            output = _out if start_idx == 0 else torch.cat((output, _out))
            start_idx = end_idx
        return self.forward_head(output)


# Ours -> the reference's parameter and buffer names (the hidden Linear's bias, cancelled by BN, is the
# reference's own).
BN_STATE = ("weight", "bias", "running_mean", "running_var")
NAMES = {
    "backbone.net.0.weight": "conv.weight",
    **{f"backbone.net.1.{n}": f"bn.{n}" for n in BN_STATE},
    "projector.layers.0.0.weight": "projection_head.0.weight",
    **{f"projector.layers.0.1.{n}": f"projection_head.1.{n}" for n in BN_STATE},
    "projector.layers.1.0.weight": "projection_head.3.weight",
    "projector.layers.1.0.bias": "projection_head.3.bias",
    "prototypes.weight": "prototypes.weight",
}


def reference_from(method: SwAV) -> ReferenceModel:
    reference = ReferenceModel()
    ours, theirs = method.state_dict(), reference.state_dict()
    with torch.no_grad():
        for name, ref_name in NAMES.items():
            theirs[ref_name].copy_(ours[name])
        # The official hidden Linear has a bias, which the BatchNorm after it cancels (sslcore's MLP head has
        # none): at zero it stays (numerically) zero and the two networks compute the same function.
        reference.projection_head[0].bias.zero_()
    return reference


def distributed_sinkhorn(out, epsilon, sinkhorn_iterations, world_size=1):
    """main_swav.py distributed_sinkhorn on one process (dist.all_reduce is the identity)."""
    Q = torch.exp(out / epsilon).t()  # Q is K-by-B for consistency with notations from our paper
    B = Q.shape[1] * world_size  # number of samples to assign
    K = Q.shape[0]  # how many prototypes
    sum_Q = torch.sum(Q)
    Q /= sum_Q
    for it in range(sinkhorn_iterations):
        # normalize each row: total weight per prototype must be 1/K
        sum_of_rows = torch.sum(Q, dim=1, keepdim=True)
        Q /= sum_of_rows
        Q /= K
        # normalize each column: total weight per sample must be 1/B
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B  # the colomns must sum to 1 so that Q is an assignment
    return Q.t()


def reference_swav(model, steps, *, nmb_crops, crops_for_assign, temperature, epsilon, sinkhorn_iterations,
                   queue_length, epoch_queue_starts, freeze_prototypes_niters, steps_per_epoch):
    """main_swav.py: main() (the queue) and train() (one epoch), iteration by iteration."""
    optimizer = sgd(model.parameters())
    queue = None
    queue_used = []
    losses = []
    for iteration, inputs in enumerate(steps):
        epoch, it = divmod(iteration, steps_per_epoch)
        if it == 0:  # main(): start of an epoch, then train()
            if queue_length > 0 and epoch >= epoch_queue_starts and queue is None:
                queue = torch.zeros(len(crops_for_assign), queue_length, DIM)
            use_the_queue = False
        # normalize the prototypes
        with torch.no_grad():
            w = model.prototypes.weight.data.clone()
            w = nn.functional.normalize(w, dim=1, p=2)
            model.prototypes.weight.copy_(w)
        # ============ multi-res forward passes ... ============
        embedding, output = model(inputs)
        embedding = embedding.detach()
        bs = inputs[0].size(0)
        # ============ swav loss ... ============
        loss = 0
        for i, crop_id in enumerate(crops_for_assign):
            with torch.no_grad():
                out = output[bs * crop_id : bs * (crop_id + 1)].detach()
                # time to use the queue
                if queue is not None:
                    if use_the_queue or not torch.all(queue[i, -1, :] == 0):
                        use_the_queue = True
                        out = torch.cat((torch.mm(queue[i], model.prototypes.weight.t()), out))
                    # fill the queue
                    queue[i, bs:] = queue[i, :-bs].clone()
                    queue[i, :bs] = embedding[crop_id * bs : (crop_id + 1) * bs]
                # get assignments
                q = distributed_sinkhorn(out, epsilon, sinkhorn_iterations)[-bs:]
            # cluster assignment prediction
            subloss = 0
            for v in np.delete(np.arange(np.sum(nmb_crops)), crop_id):
                x = output[bs * v : bs * (v + 1)] / temperature
                subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
            loss += subloss / (np.sum(nmb_crops) - 1)
        loss /= len(crops_for_assign)
        queue_used.append(use_the_queue)
        # ============ backward and optim step ... ============
        optimizer.zero_grad()
        loss.backward()
        # cancel gradients for the prototypes
        if iteration < freeze_prototypes_niters:
            for name, p in model.named_parameters():
                if "prototypes" in name:
                    p.grad = None
        optimizer.step()
        losses.append(loss.detach())
    return losses, queue, queue_used


@pytest.mark.parametrize(
    "case",
    [
        # 2 x 16 px + 3 x 8 px crops; prototypes frozen for 2 steps; a queue of 2 batches filled from step 1
        # (epoch 1) and used at step 3, when it is full
        dict(locals_=3, crops_for_assign=(0, 1), queue=2 * B, epoch_queue_starts=1, freeze=2),
        # 2 crops of one resolution, codes of the first only, no queue, prototypes free from the start
        dict(locals_=0, crops_for_assign=(0,), queue=None, epoch_queue_starts=0, freeze=0),
    ],
    ids=["multicrop-queue-frozen", "two-crops"],
)
def test_four_steps_equal_the_official_training_loop(case):
    epsilon, iterations, temperature, steps_n = 0.05, 3, 0.1, 4
    method = make_swav(queue=case["queue"], temperature=temperature, crops_for_assign=list(case["crops_for_assign"]),
                       epsilon=epsilon, sinkhorn_iterations=iterations, freeze_prototypes_niters=case["freeze"],
                       epoch_queue_starts=case["epoch_queue_starts"])
    with torch.no_grad():  # un-normalized prototypes: the first normalization must happen in the step
        method.prototypes.weight.mul_(3.0)
    steps = [crops(seed, locals_=case["locals_"]) for seed in range(steps_n)]
    reference = reference_from(method)
    initial_prototypes = method.prototypes.weight.detach().clone()
    ref_losses, ref_queue, queue_used = reference_swav(
        reference, steps, nmb_crops=[2, case["locals_"]], crops_for_assign=list(case["crops_for_assign"]),
        temperature=temperature, epsilon=epsilon, sinkhorn_iterations=iterations,
        queue_length=case["queue"] or 0, epoch_queue_starts=case["epoch_queue_starts"],
        freeze_prototypes_niters=case["freeze"], steps_per_epoch=1,
    )
    losses = train(method, method, steps)

    torch.testing.assert_close(torch.stack(losses), torch.stack(ref_losses), **TOL)
    assert len({round(float(x), 6) for x in losses}) == steps_n  # the steps did change something
    ours, theirs = method.state_dict(), reference.state_dict()
    for name, ref_name in NAMES.items():
        torch.testing.assert_close(ours[name], theirs[ref_name], **TOL, msg=lambda m: f"{name}: {m}")
    if case["queue"]:
        assert queue_used == [False, False, False, True]  # the reference did read its queue at the last step
        for i, queue in enumerate(method.queues):
            # ring buffer and shifted queue agree here: [newest batch, previous batch]
            torch.testing.assert_close(queue.queue, ref_queue[i], **TOL)
            assert queue.filled == queue.capacity
    if case["freeze"]:
        # frozen for 2 steps: only normalized in between, then trained
        assert not torch.allclose(method.prototypes.weight, F.normalize(initial_prototypes, dim=1), atol=1e-4)


def test_prototypes_are_normalized_before_the_step_and_frozen_by_the_step_counter():
    method = make_swav(freeze_prototypes_niters=3)
    with torch.no_grad():
        method.prototypes.weight.mul_(5.0)
    out = method(Batch(views=crops(0), index=torch.arange(B)), StepInfo(0, 10, 5))
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(K))
    for step, frozen in ((2, True), (3, False)):
        method.zero_grad()
        method(Batch(views=crops(step), index=torch.arange(B)), StepInfo(step, 10, 5)).loss.backward()
        method.before_optimizer_step(StepInfo(step, 10, 5))
        assert (method.prototypes.weight.grad is None) == frozen
        assert method.projector.layers[0][0].weight.grad is not None  # only the prototypes are frozen
    assert torch.isfinite(out.loss)


def test_multicrop_forward_batches_consecutive_crops_of_one_resolution():
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return x.mean(dim=(1, 2, 3))[:, None] * torch.ones(1, 2)

    views = [torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8), torch.randn(3, 3, 4, 4), torch.randn(3, 3, 8, 8)]
    out = multicrop_forward(Recorder(), views)
    assert seen == [(6, 3, 8, 8), (3, 3, 4, 4), (3, 3, 8, 8)]
    torch.testing.assert_close(out[:, 0], torch.cat([v.mean(dim=(1, 2, 3)) for v in views]))


def test_checks_views_queue_and_heads():
    method = make_swav()
    with pytest.raises(SslcoreError, match="at least 2 views"):
        method(Batch(views=crops(0)[:1], index=torch.arange(B)), StepInfo(0, 4, 1))
    with pytest.raises(SslcoreError, match="names view 5, but the batch has 5 views"):
        make_swav(crops_for_assign=[0, 5])(Batch(views=crops(0), index=torch.arange(B)), StepInfo(0, 4, 1))
    with pytest.raises(SslcoreError, match="same batch size"):
        method(Batch(views=[crops(0)[0], crops(0, batch=2)[1]], index=torch.arange(B)), StepInfo(0, 4, 1))
    with pytest.raises(SslcoreError, match="not a multiple of the 4 samples"):
        small = {**document(queue=6, epoch_queue_starts=0), "run": {"batch_size": B, "steps": 4}}  # 6 >= one batch
        build_method(small, host=host(), total_steps=4, steps_per_epoch=1)(
            Batch(views=crops(0), index=torch.arange(B)), StepInfo(0, 4, 1))
    replicated = document(queue=8)
    replicated["key_store"]["sharding"] = "replicated"
    with pytest.raises(SslcoreError, match="sharded"):
        build_method(replicated, host=host())
    wrong_head = document()
    wrong_head["heads"]["prototypes"] = {"kind": "mlp", "num_layers": 1, "out_dim": K}
    with pytest.raises(SslcoreError, match="prototypes layer"):
        build_method(wrong_head, host=host())
    for bad in ((), (0, 0), (-1, 1)):
        with pytest.raises(ValueError, match="crops_for_assign"):
            SwAVConfig(crops_for_assign=bad)


def test_one_queue_per_assigned_crop_and_no_queue_without_a_key_store():
    assert len(make_swav(queue=8, crops_for_assign=[0, 1, 2]).queues) == 3
    assert len(make_swav().queues) == 0
    method = make_swav(queue=8)
    assert {name for name in method.state_dict() if name.startswith("queues.")} >= {
        "queues.0.queue", "queues.1.queue", "queues.0.count", "queues.1.count"}


# -- resume: the queue comes back through the state dict; the freeze follows the step counter -----------------
def test_a_resumed_run_continues_the_uninterrupted_one():
    kwargs = dict(queue=2 * B, epoch_queue_starts=1, freeze_prototypes_niters=3)
    steps = [crops(seed) for seed in range(4)]
    straight = make_swav(**kwargs)
    optimizer = sgd(straight.parameters())
    train(straight, straight, steps[:2], optimizer=optimizer)
    saved = copy.deepcopy({"method": straight.state_dict(), "optimizer": optimizer.state_dict()})
    assert straight.queues[0].filled == B  # half full: filled at step 1, read at step 3
    expected = train(straight, straight, steps[2:], first_step=2, optimizer=optimizer)

    resumed = make_swav(seed=1, **kwargs)  # other initial weights: everything must come from the checkpoint
    resumed.load_state_dict(saved["method"])
    resumed_optimizer = sgd(resumed.parameters())
    resumed_optimizer.load_state_dict(saved["optimizer"])
    got = train(resumed, resumed, steps[2:], first_step=2, optimizer=resumed_optimizer)
    torch.testing.assert_close(torch.stack(got), torch.stack(expected), rtol=0, atol=0)
    for queue, ref in zip(resumed.queues, straight.queues):
        torch.testing.assert_close(queue.queue, ref.queue, rtol=0, atol=0)
        assert queue.filled == ref.filled == queue.capacity
    for ours, ref in zip(resumed.parameters(), straight.parameters()):
        torch.testing.assert_close(ours, ref, rtol=0, atol=0)


# -- 2 processes with batch B == 1 process with batch 2B --------------------------------------------------------
def direct_swav(queue_size: int) -> SwAV:
    """SwAV from its parts without a plugin host (the workers then skip importing every built-in plugin).

    BatchNorm-free: torch's SyncBatchNorm needs an accelerator, and per-process BatchNorm is not meant to equal
    BatchNorm over the global batch. The Sinkhorn codes, the sharded queues and the gradients are what is tested.
    """
    torch.manual_seed(0)
    backbone = TinyNet(TinyConfig(width=WIDTH, batch_norm=False))
    projector = MLPHead(MLPHeadConfig(num_layers=2, hidden_dim=HIDDEN, out_dim=DIM), WIDTH)
    queues = [Queue(DIM, queue_size, sharding="sharded", init="zeros") for _ in range(2)]
    return SwAV(SwAVConfig(freeze_prototypes_niters=1, epoch_queue_starts=0), backbone=backbone, projector=projector,
                prototypes=Prototypes(DIM, K), loss=SoftCrossEntropyLoss(0.1), queues=queues)


QUEUE = 4 * B  # in total: 2 global batches of 2B, so 2 local batches of B per rank


def probe_scores() -> torch.Tensor:
    return F.normalize(torch.randn(2 * B, K, generator=torch.Generator().manual_seed(7)), dim=1)


def _worker(rank: int, world: int, steps) -> dict:
    method = direct_swav(QUEUE)
    model = nn.parallel.DistributedDataParallel(method, broadcast_buffers=False)
    mine = slice(rank * B, (rank + 1) * B)
    losses = train(model, method, [[view[mine] for view in views] for views in steps])
    return {
        "world": distributed.world_size(),
        "losses": torch.stack(losses),
        "params": [p.detach() for p in method.parameters()],
        "queues": [queue.queue.clone() for queue in method.queues],
        # the method's codes with its (full) queue: the equipartition spans both ranks' queues and batches
        "codes": method.codes(probe_scores()[mine], method.queues[0]),
    }


@pytest.mark.distributed
def test_two_processes_equal_one_process_with_the_global_batch():
    steps = [crops(seed, batch=2 * B) for seed in range(4)]  # queues fill at steps 0-1, are read at steps 2-3
    ranks = run_distributed(_worker, steps, world_size=2)
    assert [r["world"] for r in ranks] == [2, 2]

    single = direct_swav(QUEUE)
    losses = torch.stack(train(single, single, steps))
    torch.testing.assert_close((ranks[0]["losses"] + ranks[1]["losses"]) / 2, losses, **TOL)
    assert not torch.allclose(ranks[0]["losses"], ranks[1]["losses"])  # the ranks saw different samples
    for r in ranks:
        for ours, ref in zip(r["params"], single.parameters()):
            torch.testing.assert_close(ours, ref.detach(), **TOL)
    # Sharded queues: each rank holds its own rows of the last 2 global batches (single process: slots
    # [0, 2B) = step 2, [2B, 4B) = step 3, each batch rank 0's samples first).
    for i, queue in enumerate(single.queues):
        for rank, r in enumerate(ranks):
            rows = torch.cat([torch.arange(rank * B, (rank + 1) * B) + offset for offset in (0, 2 * B)])
            torch.testing.assert_close(r["queues"][i], queue.queue[rows], **TOL)
    codes = single.codes(probe_scores(), single.queues[0])
    torch.testing.assert_close(torch.cat([r["codes"] for r in ranks]), codes, **TOL)
    assert not torch.allclose(codes, single.codes(probe_scores()), atol=1e-3)  # the queue took part


# -- recipes ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["swav_resnet50", "swav_cifar10", "swav_smoke"])
def test_recipes_resolve(name):
    recipe = resolve(name, swav_host())
    assert recipe.components["method"].kind == "swav"
    assert recipe.components["views"].kind == "multicrop"
    assert recipe.components["heads.prototypes"].kind == "prototypes"


def test_paper_recipe_carries_the_official_numbers():
    recipe = resolve("swav_resnet50", swav_host())
    assert recipe.run.batch_size == 4096 and recipe.run.epochs == 800
    views = recipe.components["views"].config
    assert (views.global_crops, views.global_size, tuple(views.global_scale)) == (2, 224, (0.14, 1.0))
    assert (views.local_crops, views.local_size, tuple(views.local_scale)) == (6, 96, (0.05, 0.14))
    method = recipe.components["method"].config
    assert method.crops_for_assign == (0, 1) and method.epsilon == 0.05 and method.sinkhorn_iterations == 3
    assert method.freeze_prototypes_niters == 313
    assert "key_store" not in recipe.components  # --queue_length 0 at batch 4096
    assert recipe.components["loss"].config.temperature == 0.1
    assert recipe.components["heads.prototypes"].config.num_prototypes == 3000
    projector = recipe.components["heads.projector"].config
    assert (projector.hidden_dim, projector.out_dim, projector.batch_norm) == (2048, 128, True)
    optimizer, schedule = recipe.optimizer, recipe.schedule
    assert optimizer.kind == "lars" and optimizer.lr(4096) == 4.8 and optimizer.weight_decay == 1e-6
    assert math.isclose(optimizer.lr(4096) * schedule.warmup_start_ratio, 0.3)  # --start_warmup 0.3
    assert math.isclose(optimizer.lr(4096) * schedule.final_lr_ratio, 0.0048)  # --final_lr 0.0048
    assert schedule.warmup_epochs == 10 and optimizer.exclude_bias_and_norm is False


def test_smoke_recipe_builds_and_steps():
    plugins = swav_host()
    recipe = resolve("swav_smoke", plugins)
    doc = recipe.to_dict()
    torch.manual_seed(0)
    method = build_method({k: doc[k] for k in ("method", "backbone", "heads", "key_store", "loss")}, host=plugins)
    assert [queue.capacity for queue in method.queues] == [32, 32]
    views = [torch.randn(16, 3, 32, 32) for _ in range(2)] + [torch.randn(16, 3, 16, 16) for _ in range(2)]
    out = method(Batch(views=views, index=torch.arange(16)), StepInfo(0, 8, 4))
    out.loss.backward()
    assert torch.isfinite(out.loss) and method.prototypes.weight.grad is not None


def test_canonical_copy_at_the_repository_root_is_identical():
    root = Path(__file__).resolve().parents[3] / "recipes" / "swav_resnet50.toml"
    if not root.is_file():
        pytest.skip("runs inside the sslcore repository, which keeps canonical copies in recipes/")
    assert root.read_text() == (files("sslcore_plugin_swav") / "recipes" / "swav_resnet50.toml").read_text()


# -- the engine: train the smoke recipe, then resume it from a mid-run checkpoint -------------------------------
def logged_losses(run_dir: Path) -> dict[int, float]:
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in records if "loss" in r}


@pytest.mark.slow
def test_engine_trains_the_smoke_recipe_and_resumes_with_its_queue(tmp_path):
    from sslcore.engine.trainer import Trainer

    plugins = swav_host()
    overrides = [f"run.output_dir={tmp_path}", "run.log_every=1", "run.checkpoint_every=5", "run.deterministic=true"]
    summary = Trainer(resolve("swav_smoke", plugins, overrides), plugins).fit()
    run_dir = tmp_path / "swav_smoke"
    assert summary["steps"] == 8 and math.isfinite(summary["final_loss"])
    assert 0 <= summary["knn_top1"] <= 100
    assert (run_dir / "backbone.safetensors").is_file()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["queue_in_use"] for r in records if "queue_in_use" in r] == [0.0] * 6 + [1.0] * 2
    straight = logged_losses(run_dir)

    # Resume from the step-5 checkpoint: the queue is half full there and is read at steps 7 and 8.
    shutil.rmtree(run_dir / "checkpoints" / "step_00000008")
    Trainer(resolve("swav_smoke", plugins, overrides), plugins).fit()
    resumed = logged_losses(run_dir)
    assert sorted(resumed) == list(range(1, 9))
    assert {s: resumed[s] for s in (6, 7, 8)} == pytest.approx({s: straight[s] for s in (6, 7, 8)}, abs=1e-6)
