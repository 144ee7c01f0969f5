"""Tests of the ``dino`` method: three training steps against the official main_dino.py loop written out, the
teacher temperature and momentum schedules against the official numpy schedules, 2 processes against 1, resume,
the gradient surgery, input checks, and the shipped recipes."""

from __future__ import annotations

import copy
import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from sslcore import distributed
from sslcore.engine.optim import StepSchedule
from sslcore.errors import SslcoreError
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import batch_of, build_method, build_recipe, run_distributed, tiny_host, training_step
from sslcore_plugin_dino import DINO, clip_gradients_per_parameter_, same_size_runs, teacher_temperature
from sslcore_plugin_dino import plugin as dino_plugin

RECIPES = Path(dino_plugin.__file__).parent / "recipes"
REPO_RECIPES = Path(__file__).resolve().parents[3] / "recipes"
VIT_RECIPE = "dino_vit_small"


def make_host() -> PluginHost:
    return tiny_host("dino", dino_plugin)


K = 32  # head output width
STEPS_PER_EPOCH = 2
TOTAL_STEPS = 10  # 5 epochs
WARM_TEMP, TEMP, WARM_EPOCHS = 0.04, 0.07, 2


def document(*, batch_norm: bool = False, clip_grad: float = 0.05, freeze_last_layer: int = 1,
             base_momentum: float = 0.9, drop_path: float = 0.0) -> dict:
    return {
        "backbone": {"kind": "tiny", "width": 6, "batch_norm": batch_norm, "stride": 1, "drop_path": drop_path},
        "heads": {"projector": {"kind": "dino", "out_dim": K, "num_layers": 3, "hidden_dim": 16, "bottleneck_dim": 8,
                                "norm_last_layer": False}},
        "target_updater": {"kind": "ema", "base_momentum": base_momentum, "schedule": "cosine", "buffers": "own"},
        "loss": {"kind": "soft_cross_entropy", "temperature": 0.1},
        "method": {"kind": "dino", "warmup_teacher_temp": WARM_TEMP, "teacher_temp": TEMP,
                   "warmup_teacher_temp_epochs": WARM_EPOCHS, "center_momentum": 0.9,
                   "freeze_last_layer": freeze_last_layer, "clip_grad": clip_grad},
    }


def make_dino(**options) -> DINO:
    return build_method(document(**options), host=make_host(), total_steps=TOTAL_STEPS, steps_per_epoch=STEPS_PER_EPOCH)


def multicrop(batch: int, seed: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """2 global 8x8 crops, then 3 local 4x4 crops."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, 8, 8, generator=generator, dtype=dtype) for _ in range(2)] + [
        torch.randn(batch, 3, 4, 4, generator=generator, dtype=dtype) for _ in range(3)
    ]


def param_groups(named: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """Official dino utils.get_params_groups: no weight decay on biases and 1-D parameters."""
    trainable = [(n, p) for n, p in named if p.requires_grad]
    regularized = [p for n, p in trainable if not (n.endswith(".bias") or p.ndim == 1)]
    not_regularized = [p for n, p in trainable if n.endswith(".bias") or p.ndim == 1]
    return [{"params": regularized, "weight_decay": weight_decay}, {"params": not_regularized, "weight_decay": 0.0}]


def train(model: nn.Module, method: DINO, optimizer: torch.optim.Optimizer, steps: list[list[torch.Tensor]],
          first_step: int = 0) -> list[torch.Tensor]:
    """Train on ``steps`` (the crops of each) from step ``first_step``, in the engine's order."""
    losses = []
    for offset, crops in enumerate(steps):
        info = StepInfo(first_step + offset, TOTAL_STEPS, STEPS_PER_EPOCH)
        loss = training_step(method, optimizer, batch_of(*crops), info, model=model).loss
        losses.append(loss.detach())
    return losses


# --- the official schedules (facebookresearch/dino utils.cosine_scheduler, DINOLoss.teacher_temp_schedule) ------------


def official_cosine_schedule(base: float, final: float, epochs: int, niter_per_ep: int, warmup_epochs: int = 0,
                             start_warmup_value: float = 0.0) -> np.ndarray:
    warmup_iters = warmup_epochs * niter_per_ep
    warmup = np.linspace(start_warmup_value, base, warmup_iters) if warmup_epochs > 0 else np.array([])
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warmup, cosine))


def official_teacher_temps(warmup_temp: float, temp: float, warmup_epochs: int, epochs: int) -> np.ndarray:
    return np.concatenate((np.linspace(warmup_temp, temp, warmup_epochs), np.ones(epochs - warmup_epochs) * temp))


# --- (a) reference step: official main_dino.py train_one_epoch + DINOLoss, written out --------------------------------


def official_multicrop_forward(backbone: nn.Module, head: nn.Module, crops: list[torch.Tensor]) -> torch.Tensor:
    """utils.MultiCropWrapper: the backbone on each run of consecutive same-width crops, the head on all."""
    counts = torch.unique_consecutive(torch.tensor([c.shape[-1] for c in crops]), return_counts=True)[1]
    outputs, start = [], 0
    for end in torch.cumsum(counts, 0).tolist():
        outputs.append(backbone(torch.cat(crops[start:end])))
        start = end
    return head(torch.cat(outputs))


def official_dino_loss(student_output: torch.Tensor, teacher_output: torch.Tensor, center: torch.Tensor,
                       teacher_temp: float, ncrops: int, student_temp: float = 0.1) -> torch.Tensor:
    student_out = (student_output / student_temp).chunk(ncrops)
    teacher_out = F.softmax((teacher_output - center) / teacher_temp, dim=-1).detach().chunk(2)
    total, n_terms = 0.0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            total = total + torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
            n_terms += 1
    return total / n_terms


def test_three_steps_match_the_official_training_loop():
    torch.manual_seed(0)
    clip, base_momentum = 0.05, 0.9
    # float64 so both computations agree to rounding; BatchNorm checks the per-resolution backbone passes.
    method = make_dino(batch_norm=True, clip_grad=clip, base_momentum=base_momentum).double()
    f_s, h_s = copy.deepcopy(method.student.backbone), copy.deepcopy(method.student.head)
    f_t, h_t = copy.deepcopy(f_s), copy.deepcopy(h_s)  # teacher and student start with the same weights
    for p in [*f_t.parameters(), *h_t.parameters()]:
        p.requires_grad_(False)
    center = torch.zeros(1, K, dtype=torch.float64)
    student = nn.ModuleDict({"backbone": f_s, "head": h_s})

    optimizer = torch.optim.AdamW(param_groups(list(method.named_parameters()), 0.04), lr=0.01)
    reference_optimizer = torch.optim.AdamW(param_groups(list(student.named_parameters()), 0.04), lr=0.01)
    temps = official_teacher_temps(WARM_TEMP, TEMP, WARM_EPOCHS, TOTAL_STEPS // STEPS_PER_EPOCH)
    momentum = official_cosine_schedule(base_momentum, 1.0, TOTAL_STEPS // STEPS_PER_EPOCH, STEPS_PER_EPOCH)
    last_layer_start = [p.detach().clone() for p in method.student.head.last_layer.parameters()]
    method.train()
    largest_norm = 0.0
    for it in range(3):
        epoch = it // STEPS_PER_EPOCH
        crops = multicrop(4, seed=it, dtype=torch.float64)
        [loss] = train(method, method, optimizer, [crops], first_step=it)

        teacher_output = official_multicrop_forward(f_t, h_t, crops[:2])  # only the 2 global crops
        student_output = official_multicrop_forward(f_s, h_s, crops)
        reference = official_dino_loss(student_output, teacher_output, center, temps[epoch], len(crops))
        # DINOLoss.update_center (one process: the all-reduce is the identity)
        center = center * 0.9 + teacher_output.detach().sum(dim=0, keepdim=True) / len(teacher_output) * 0.1
        reference_optimizer.zero_grad()
        reference.backward()
        for p in student.parameters():  # utils.clip_gradients: each parameter on its own
            if p.grad is not None:
                norm = p.grad.norm(2)
                largest_norm = max(largest_norm, norm.item())
                if clip / (norm + 1e-6) < 1:
                    p.grad.mul_(clip / (norm + 1e-6))
        if epoch < 1:  # utils.cancel_gradients_last_layer with freeze_last_layer = 1
            for name, p in student.named_parameters():
                if "last_layer" in name:
                    p.grad = None
        reference_optimizer.step()
        with torch.no_grad():  # EMA of the teacher with momentum_schedule[it]
            m = momentum[it]
            for q, k in zip(student.parameters(), [*f_t.parameters(), *h_t.parameters()], strict=True):
                k.mul_(m).add_((1 - m) * q.detach())

        assert loss.item() == pytest.approx(reference.item(), abs=1e-10)
        torch.testing.assert_close(method.center, center, atol=1e-12, rtol=0)
        if it == 1:  # end of epoch 0: the last layer has not moved (no update, no weight decay)
            for now, start in zip(method.student.head.last_layer.parameters(), last_layer_start, strict=True):
                torch.testing.assert_close(now, start, atol=0, rtol=0)
    assert largest_norm > clip, "the clipping path was not exercised"
    pairs = [(method.student.backbone, f_s), (method.student.head, h_s), (method.teacher.backbone, f_t),
             (method.teacher.head, h_t)]
    for mine, theirs in pairs:
        for (name, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=name)
    last_layer_now = list(method.student.head.last_layer.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(last_layer_now, last_layer_start)), "unfrozen in epoch 1"
    assert not torch.allclose(method.student.backbone.net[0].weight, method.teacher.backbone.net[0].weight)
    assert method.backbone is method.student.backbone


# --- schedules of the shipped recipes against the official numpy schedules --------------------------------------------


@pytest.mark.parametrize("name", [VIT_RECIPE, "dino_resnet50", "dino_cifar10"])
def test_teacher_temperature_and_momentum_follow_the_official_schedules(name):
    recipe = resolve(name, make_host())
    config = recipe.components["method"].config
    epochs, niter = recipe.run.epochs, 7  # any number of iterations per epoch
    temps = official_teacher_temps(config.warmup_teacher_temp, config.teacher_temp,
                                   config.warmup_teacher_temp_epochs, epochs)
    ours = [teacher_temperature(e, warmup_temp=config.warmup_teacher_temp, temp=config.teacher_temp,
                                warmup_epochs=config.warmup_teacher_temp_epochs) for e in range(epochs)]
    np.testing.assert_allclose(ours, temps, rtol=0, atol=1e-15)
    ema = recipe.components["target_updater"].config
    updater = recipe.components["target_updater"].build(total_steps=epochs * niter)
    official = official_cosine_schedule(ema.base_momentum, 1.0, epochs, niter)
    np.testing.assert_allclose([updater.momentum(it) for it in range(epochs * niter)], official, rtol=0, atol=1e-15)


def test_teacher_temperature_warm_up_edge_cases():
    assert teacher_temperature(0, warmup_temp=0.04, temp=0.07, warmup_epochs=0) == 0.07
    assert teacher_temperature(0, warmup_temp=0.04, temp=0.07, warmup_epochs=1) == 0.04  # linspace(a, b, 1) = [a]
    assert teacher_temperature(1, warmup_temp=0.04, temp=0.07, warmup_epochs=1) == 0.07
    assert teacher_temperature(29, warmup_temp=0.04, temp=0.07, warmup_epochs=30) == pytest.approx(0.07)
    assert teacher_temperature(500, warmup_temp=0.04, temp=0.07, warmup_epochs=30) == 0.07
    with pytest.raises(ValueError, match="epoch"):
        teacher_temperature(-1, warmup_temp=0.04, temp=0.07, warmup_epochs=30)


def test_paper_recipe_lr_and_weight_decay_schedules_are_the_official_ones():
    """The engine's per-step lr and weight decay against utils.cosine_scheduler for ViT-S/16 (1251 steps per epoch).

    After the warm-up the lr is the official one to rounding; the engine's linear warm-up reaches the peak one step
    later than np.linspace and its weight-decay cosine ends at the last step instead of one past it, differences of
    under 1e-4 relative at this length.
    """
    recipe = resolve("dino_vit_small", make_host())
    epochs, niter = recipe.run.epochs, 1251
    total = epochs * niter
    lr = recipe.optimizer.lr(recipe.run.batch_size)
    assert lr == pytest.approx(0.002)
    schedule = StepSchedule(recipe.schedule, total, niter)
    official_lr = official_cosine_schedule(lr, 1e-6, epochs, niter, warmup_epochs=10)
    official_wd = official_cosine_schedule(0.04, 0.4, epochs, niter)
    steps = np.arange(0, total, 97)
    ours_lr = np.array([lr * schedule.lr_factor(int(s)) for s in steps])
    ours_wd = np.array([schedule.weight_decay(recipe.optimizer.weight_decay, int(s)) for s in steps])
    after_warmup = steps >= 10 * niter
    np.testing.assert_allclose(ours_lr[after_warmup], official_lr[steps[after_warmup]], rtol=1e-9, atol=0)
    np.testing.assert_allclose(ours_lr, official_lr[steps], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(ours_wd, official_wd[steps], rtol=1e-4, atol=0)
    assert schedule.weight_decay(0.0, 1000) == 0.0  # the non-regularized group stays at 0


# --- gradient surgery and multi-crop grouping -------------------------------------------------------------------------


def test_clip_gradients_per_parameter_clips_each_tensor_on_its_own():
    big, small = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))
    big.grad, small.grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.3, 0.4])  # norms 5 and 0.5
    clip_gradients_per_parameter_([big, small, nn.Parameter(torch.zeros(1))], 1.0)
    torch.testing.assert_close(big.grad, torch.tensor([3.0, 4.0, 0.0]) / (5 + 1e-6))  # coefficient 1 / (5 + 1e-6)
    torch.testing.assert_close(small.grad, torch.tensor([0.3, 0.4]))  # below the bound: untouched
    with pytest.raises(ValueError, match="max_norm"):
        clip_gradients_per_parameter_([big], 0.0)


def test_same_size_runs_group_consecutive_crops_like_the_official_wrapper():
    sizes = [8, 8, 4, 4, 4, 8]
    crops = [torch.zeros(1, 3, s, s) for s in sizes]
    assert same_size_runs(crops) == [(0, 2), (2, 5), (5, 6)]
    with pytest.raises(SslcoreError, match="at least one crop"):
        same_size_runs([])


def test_teacher_has_no_stochastic_depth_and_the_student_keeps_it():
    method = make_dino(drop_path=0.5)
    student_drops = [m for m in method.student.modules() if isinstance(m, DropPath)]
    teacher_drops = [m for m in method.teacher.modules() if isinstance(m, DropPath)]
    assert [m.drop_prob for m in student_drops] == [0.5]
    assert [m.drop_prob for m in teacher_drops] == [0.0]
    assert all(not p.requires_grad for p in method.teacher.parameters())


# --- (c) 2 processes with batch B == 1 process with batch 2B ----------------------------------------------------------
B, STEPS = 3, 3


def _worker(rank: int, world: int, steps: list[list[torch.Tensor]]) -> dict:
    torch.manual_seed(0)
    method = make_dino()  # BN-free: per-process BatchNorm statistics would differ from one process's by design
    model = nn.parallel.DistributedDataParallel(method, broadcast_buffers=False)
    optimizer = torch.optim.AdamW(param_groups(list(method.named_parameters()), 0.04), lr=0.01)
    mine = slice(rank * B, (rank + 1) * B)
    losses = train(model, method, optimizer, [[crop[mine] for crop in crops] for crops in steps])
    return {
        "world": distributed.world_size(),
        "losses": torch.stack(losses),
        "center": method.center.clone(),
        "student": {k: v.clone() for k, v in method.student.state_dict().items()},
        "teacher": {k: v.clone() for k, v in method.teacher.state_dict().items()},
    }


@pytest.mark.distributed
def test_two_processes_equal_one_process_with_the_global_batch():
    steps = [multicrop(2 * B, seed) for seed in range(STEPS)]
    ranks = run_distributed(_worker, steps, world_size=2)
    assert [r["world"] for r in ranks] == [2, 2]

    torch.manual_seed(0)
    single = make_dino()
    optimizer = torch.optim.AdamW(param_groups(list(single.named_parameters()), 0.04), lr=0.01)
    losses = torch.stack(train(single, single, optimizer, steps))
    tol = dict(atol=1e-5, rtol=1e-5)
    # each rank's loss is a mean over its own samples: their average is the global-batch loss
    torch.testing.assert_close((ranks[0]["losses"] + ranks[1]["losses"]) / 2, losses, **tol)
    assert not torch.allclose(ranks[0]["losses"], ranks[1]["losses"])  # the ranks saw different samples
    assert single.center.abs().sum() > 0
    for r in ranks:
        torch.testing.assert_close(r["center"], single.center, **tol)  # the centre uses the global batch
        for key, value in single.student.state_dict().items():
            torch.testing.assert_close(r["student"][key], value, **tol, msg=key)
        for key, value in single.teacher.state_dict().items():
            torch.testing.assert_close(r["teacher"][key], value, **tol, msg=key)


# --- resume: the centre and the teacher are state, the schedules follow the step --------------------------------------


def test_resuming_from_a_state_dict_continues_exactly():
    steps = [multicrop(4, seed) for seed in range(4)]
    torch.manual_seed(0)
    straight = make_dino()
    optimizer = torch.optim.AdamW(param_groups(list(straight.named_parameters()), 0.04), lr=0.01)
    uninterrupted = train(straight, straight, optimizer, steps)

    torch.manual_seed(0)
    first = make_dino()
    first_optimizer = torch.optim.AdamW(param_groups(list(first.named_parameters()), 0.04), lr=0.01)
    train(first, first, first_optimizer, steps[:2])
    saved = copy.deepcopy((first.state_dict(), first_optimizer.state_dict()))
    assert "center" in saved[0] and saved[0]["center"].abs().sum() > 0  # a persistent buffer

    torch.manual_seed(1)  # different initial weights: everything must come from the checkpoint
    resumed = make_dino()
    resumed_optimizer = torch.optim.AdamW(param_groups(list(resumed.named_parameters()), 0.04), lr=0.01)
    resumed.load_state_dict(saved[0])
    resumed_optimizer.load_state_dict(saved[1])
    continued = train(resumed, resumed, resumed_optimizer, steps[2:], first_step=2)
    torch.testing.assert_close(torch.stack(continued), torch.stack(uninterrupted[2:]), atol=0, rtol=0)
    torch.testing.assert_close(resumed.center, straight.center, atol=0, rtol=0)
    for (name, a), (_, b) in zip(resumed.state_dict().items(), straight.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


# --- input checks -----------------------------------------------------------------------------------------------------


def test_rejects_fewer_than_two_crops():
    method = make_dino()
    with pytest.raises(SslcoreError, match="2 global crops"):
        method(Batch(views=[torch.randn(2, 3, 8, 8)], index=torch.arange(2)), StepInfo(0, 10, 2))


def test_freezing_the_last_layer_needs_a_head_that_has_one():
    doc = document()
    doc["heads"]["projector"] = {"kind": "mlp", "num_layers": 2, "hidden_dim": 16, "out_dim": K}
    with pytest.raises(SslcoreError, match="last_layer"):
        build_method(doc, host=make_host())
    doc["method"]["freeze_last_layer"] = 0
    assert isinstance(build_method(doc, host=make_host()), DINO)


def test_fp16_with_per_parameter_clipping_builds():
    """The engine unscales fp16 gradients before ``before_optimizer_step``, so clipping sees true gradients."""
    doc = document()
    doc["run"] = {"batch_size": 8, "steps": 10, "mixed_precision": "fp16"}
    assert isinstance(build_method(doc, host=make_host()), DINO)


# --- (b, d) the shipped recipes ---------------------------------------------------------------------------------------


@functools.cache
def recipe_and_method(name: str):
    """The recipe resolved and its method built (once per test session: the ImageNet ones are large)."""
    return build_recipe(name, make_host())


def test_smoke_recipe_builds_and_steps_on_multi_crop_views():
    torch.manual_seed(0)
    recipe, method = recipe_and_method("dino_smoke")
    assert isinstance(method, DINO)
    views = recipe.components["views"].build()
    from PIL import Image

    crops = [views(Image.new("RGB", (32, 32), color=(i * 40, 100, 200))) for i in range(4)]
    batch = [torch.stack(group) for group in zip(*crops)]
    assert [tuple(c.shape[-2:]) for c in batch] == [(32, 32), (32, 32), (16, 16), (16, 16)]
    output = method(Batch(views=batch, index=torch.arange(4)), StepInfo(0, 4, 2))
    # the mean of cross-entropies over K = 64 outputs, near log K for a fresh network
    assert output.loss.ndim == 0 and 0 < output.loss.item() < 2 * math.log(64)
    assert output.logs["teacher_temp"] == 0.04


@pytest.mark.parametrize("name", [VIT_RECIPE, "dino_resnet50", "dino_cifar10"])
def test_recipes_resolve_and_build(name):
    recipe, method = recipe_and_method(name)
    assert isinstance(method, DINO)
    assert recipe.run.grad_clip is None  # DINO clips per parameter, in the method
    ema = recipe.components["target_updater"].config
    assert (ema.schedule, ema.final_momentum, ema.buffers) == ("cosine", 1.0, "own")
    assert method.center.shape == (1, method.student.head.out_dim)
    assert recipe.components["views"].config.style == "dino"


def test_paper_recipe_has_the_papers_hyperparameters_and_runs_local_crops():
    recipe, method = recipe_and_method("dino_vit_small")
    assert (recipe.run.batch_size, recipe.run.epochs, recipe.optimizer.kind) == (1024, 300, "adamw")
    assert recipe.optimizer.lr(1024) == pytest.approx(0.002)
    assert (recipe.optimizer.weight_decay, recipe.schedule.weight_decay_end) == (0.04, 0.4)
    assert recipe.optimizer.lr(1024) * recipe.schedule.final_lr_ratio == pytest.approx(1e-6)  # --min_lr
    c = method.config
    assert (c.warmup_teacher_temp, c.teacher_temp, c.warmup_teacher_temp_epochs) == (0.04, 0.07, 30)
    assert (c.center_momentum, c.freeze_last_layer, c.clip_grad) == (0.9, 1, 3.0)
    assert method.loss.temperature == 0.1
    head = method.student.head
    assert head.out_dim == 65536 and head.last_layer.parametrizations.weight.original0.requires_grad  # not normed
    views = recipe.components["views"].config
    assert (views.global_scale, views.local_crops, views.local_scale) == ((0.4, 1.0), 8, (0.05, 0.4))
    # the ViT takes the 96 px local crops as well as the 224 px global ones
    method.eval()
    with torch.no_grad():
        features = [method.student.backbone(torch.zeros(1, 3, s, s)) for s in (224, 96)]
    assert [tuple(f.shape) for f in features] == [(1, 384), (1, 384)]


def test_repository_copy_of_the_paper_recipe_is_identical():
    if not REPO_RECIPES.is_dir():
        pytest.skip("not running from the sslcore repository (no recipes/ folder at its root)")
    assert (REPO_RECIPES / "dino_vit_small.toml").read_text() == (RECIPES / "dino_vit_small.toml").read_text()


# --- the engine: a smoke run, and resuming from its checkpoint --------------------------------------------------------


@pytest.mark.slow
def test_engine_runs_and_resumes_the_smoke_recipe(tmp_path):
    from sslcore.engine.trainer import train_from_recipe

    host = PluginHost(autoload=False, extra_plugins=[("dino", dino_plugin)])
    common = ["run.log_every=1", "run.checkpoint_every=2", "run.keep_checkpoints=5"]
    summary = train_from_recipe("dino_smoke", [f"run.output_dir={tmp_path / 'a'}", *common], host=host)
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"]) and "knn_top1" in summary
    run_a = tmp_path / "a" / "dino_smoke"
    assert (run_a / "backbone.safetensors").is_file()
    checkpoint = run_a / "checkpoints" / "step_00000002"
    train_from_recipe("dino_smoke", [f"run.output_dir={tmp_path / 'b'}", f"run.resume={checkpoint}", *common],
                      host=host)

    def losses(run_dir: Path) -> dict[int, tuple[float, float]]:
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: (r["loss"], r["teacher_temp"]) for r in records if "loss" in r}

    resumed, straight = losses(tmp_path / "b" / "dino_smoke"), losses(run_a)
    assert sorted(resumed) == [3, 4]
    for step in (3, 4):
        assert resumed[step] == pytest.approx(straight[step], rel=1e-6)
    assert straight[1][1] == 0.04 and straight[3][1] == 0.07  # teacher temperature per epoch (2 steps each)
