"""JEM and HDGE: the SGLD step and the replay buffer against their formulas, HDGE's contrastive term against a hand
computation, the calibration and OOD metrics against hand computations, 2 processes x B against 1 process x 2B
(HDGE), the buffer's per-rank shards, and the engine: separate energy / cross-entropy logs, samples.png, the recipes.
Exact resume of jem_smoke and hdge_smoke on 1 and 2 processes is in tests/engine/test_exact_resume.py."""

from __future__ import annotations

import json
import math

import pytest
import sslcore_plugin_jem.plugin as jem_plugin
import torch
from sslcore_plugin_jem.evaluate import auroc, expected_calibration_error, ood_images
from sslcore_plugin_jem.method import energy, hdge_contrastive
from sslcore_plugin_jem.views import PadCropViewsConfig, build_padcrop
from sslcore_plugin_jem.wrn import WideResNet, WideResNetConfig

from sslcore import distributed
from sslcore.components.sample_buffers import ReplayBuffer, ReplayConfig, build_replay
from sslcore.components.sgld import sgld
from sslcore.components.sgld_config import SgldConfig
from sslcore.engine.trainer import Trainer
from sslcore.errors import SslcoreError
from sslcore.method import Batch, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve
from sslcore.testing import build_method, run_distributed, tiny_host, training_step


# -- the sampler and the buffer ---------------------------------------------------------------------------------------
def test_an_sgld_step_is_the_langevin_formula():
    """log p(x) = -||x - mu||^2 / 2 has gradient mu - x: each step is x + alpha (mu - x) + sigma eps."""
    mu, start = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    alpha, sigma = 0.3, 0.05
    torch.manual_seed(7)
    got = sgld(lambda x: -0.5 * ((x - mu) ** 2).flatten(1).sum(1), start, steps=2, step_size=alpha, noise=sigma)
    torch.manual_seed(7)
    want = start.clone()
    for _ in range(2):
        want = want + alpha * (mu - want) + sigma * torch.randn_like(want)
    torch.testing.assert_close(got, want)
    assert not got.requires_grad and SgldConfig() == SgldConfig(steps=20, step_size=1.0, noise=0.01)


def test_sgld_runs_under_no_grad_and_leaves_parameters_alone():
    layer = torch.nn.Linear(4, 1)
    with torch.no_grad():
        out = SgldConfig(steps=3, noise=0.0).sample(lambda x: layer(x).squeeze(1), torch.zeros(2, 4))
    torch.testing.assert_close(out, 3 * layer.weight.detach().expand(2, 4))
    assert layer.weight.grad is None


def test_the_buffer_restarts_chains_from_noise_at_its_reinit_frequency():
    buffer = ReplayBuffer(1000, reinit=0.05, low=-1.0, high=1.0)
    like = torch.zeros(20000, 1, 2, 2)
    buffer.draw(like[:1])
    assert buffer.images.shape == (1000, 1, 2, 2) and bool(((buffer.images >= -1) & (buffer.images <= 1)).all())
    buffer.images.fill_(5.0)  # stored chains, told apart from U(-1, 1) noise
    torch.manual_seed(0)
    start, slots = buffer.draw(like)
    fresh = (start.abs() <= 1).flatten(1).all(1)
    assert bool(((start == 5.0).flatten(1).all(1) | fresh).all())
    assert abs(fresh.float().mean().item() - 0.05) < 0.006  # 4 standard deviations of the binomial
    assert slots.shape == (20000,) and int(slots.min()) >= 0 and int(slots.max()) < 1000
    never = ReplayBuffer(10, reinit=0.0, low=-1.0, high=1.0)
    never.draw(like[:1])
    never.images.fill_(5.0)
    assert bool((never.draw(like[:100])[0] == 5.0).all())


def test_the_buffer_keeps_the_chains_final_states_and_comes_back_from_its_state():
    buffer = build_replay(ReplayConfig(size=8))
    start, slots = buffer.draw(torch.zeros(3, 3, 4, 4))
    assert start.shape == (3, 3, 4, 4)
    samples = torch.randn(3, 3, 4, 4)
    buffer.write(samples, index=slots)
    torch.testing.assert_close(buffer.images[slots[-1]], samples[-1])  # the last of repeated slots wins
    restored = build_replay(ReplayConfig(size=8))
    restored.load_state_dict(buffer.state_dict())  # allocated with the saved shape
    assert torch.equal(restored.images, buffer.images)
    with pytest.raises(SslcoreError, match="holds images of shape"):
        restored.draw(torch.zeros(3, 3, 8, 8))
    with pytest.raises(ValueError, match="low must be below high"):
        ReplayConfig(low=1.0, high=1.0)


# -- the losses and metrics -------------------------------------------------------------------------------------------
def test_hdge_contrastive_term_is_its_formula():
    logits = torch.tensor([[3.0, 4.0], [1.0, -1.0]])
    labels = torch.tensor([1, 0])
    bank = torch.tensor([[0.0, 2.0], [1.0, 1.0], [-3.0, 4.0]])
    t = 0.5
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        norm = math.hypot(*row)
        other = 1  # logsumexp over classes of the one-hot-masked vector: exp(p_y) + (C - 1) * exp(0)
        pos = math.log(math.exp(row[label] / norm) + other)
        negs = [math.log(math.exp(k[label] / math.hypot(*k)) + other) for k in bank.tolist()]
        scores = [pos / t] + [n / t for n in negs]
        total += -scores[0] + math.log(sum(math.exp(s) for s in scores))
    got = hdge_contrastive(logits, labels, bank, t)
    assert got.item() == pytest.approx(total / 2, rel=1e-6)
    torch.testing.assert_close(
        energy(logits), -torch.tensor([math.log(math.exp(3) + math.exp(4)), math.log(math.exp(1) + math.exp(-1))])
    )


def test_expected_calibration_error_by_hand():
    probabilities = torch.tensor([[0.95, 0.05], [0.9, 0.1], [0.3, 0.7], [0.45, 0.55]])
    labels = torch.tensor([0, 1, 1, 0])
    # 2 bins: (0, 0.5] is empty; (0.5, 1] holds all: confidence 0.775, accuracy 0.5
    assert expected_calibration_error(probabilities, labels, bins=2) == pytest.approx(0.275)
    # 4 bins: (0.5, 0.75] holds 0.7 (right) and 0.55 (wrong); (0.75, 1] holds 0.95 (right) and 0.9 (wrong)
    want = 0.5 * abs(0.625 - 0.5) + 0.5 * abs(0.925 - 0.5)
    assert expected_calibration_error(probabilities, labels, bins=4) == pytest.approx(want)


def test_auroc_by_hand():
    assert auroc(torch.tensor([0.9, 0.5, 0.5]), torch.tensor([0.5, 0.1])) == pytest.approx(5 / 6)
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert auroc(torch.tensor([0.0]), torch.tensor([1.0, 2.0])) == 0.0


def test_out_of_distribution_sets():
    images = torch.randn(6, 3, 4, 4)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.5)
    generator = torch.Generator().manual_seed(0)
    interp = ood_images("interp", images, mean, std, generator)
    partners = [
        int(((2 * interp[i] - images[i]).unsqueeze(0) - images).flatten(1).abs().amax(1).argmin()) for i in range(6)
    ]
    torch.testing.assert_close(interp, (images + images[partners]) / 2)
    constant = ood_images("constant", images, mean, std, generator)
    assert constant.shape == images.shape and bool((constant.flatten(2).std(2) == 0).all())
    uniform = ood_images("uniform", images, mean, std, generator)
    assert float(uniform.min()) >= -1 and float(uniform.max()) <= 1 and float(uniform.std()) > 0.4


# -- the networks and views -------------------------------------------------------------------------------------------
def test_the_wide_resnet():
    assert WideResNet(WideResNetConfig()).num_features == 640  # WRN-28-10
    small = WideResNet(WideResNetConfig(depth=10, width=2, norm="batch"))
    assert small(torch.randn(2, 3, 16, 16)).shape == (2, 128)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNetConfig(depth=27)


def test_the_padcrop_view():
    from PIL import Image

    image = Image.new("RGB", (8, 8), (255, 0, 128))
    view = build_padcrop(PadCropViewsConfig(size=8, noise=0.0))
    torch.manual_seed(0)
    (tensor,) = view(image)
    assert tensor.shape == (3, 8, 8)  # reflect padding of a constant image is that image
    torch.testing.assert_close(tensor[:, 0, 0], torch.tensor([1.0, -1.0, 128 / 127.5 - 1]))
    (noisy,) = build_padcrop(PadCropViewsConfig(size=8, noise=0.1))(image)
    assert 0.05 < float((noisy - tensor).std()) < 0.2



@pytest.mark.parametrize("options", [{}, {"flip": False, "noise": 0.0}, {"size": 24, "padding": 6, "num_views": 2}])
def test_the_batched_padcrop_makes_the_pil_views(options):
    """Same seeds, same views: crops reaching into the reflected padding, flips and noise, on a batch mixing image
    sizes (each reflected at its own edges)."""
    from PIL import Image

    from sslcore.testing import pil_and_batched_views

    rng = torch.Generator().manual_seed(0)
    sides = [(32, 32)] * 10 + [(28, 36), (40, 30)]
    images = [Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=rng, dtype=torch.uint8).numpy())
              for h, w in sides]
    pil = build_padcrop(PadCropViewsConfig(**options))
    reference, views, params = pil_and_batched_views(
        pil, build_padcrop(PadCropViewsConfig(**options, pipeline="batched")), images)
    assert len(views) == options.get("num_views", 1)
    for ref, view in zip(reference, views, strict=True):
        assert view.shape == ref.shape
        torch.testing.assert_close(view, ref, rtol=0, atol=1e-6)
    if options.get("flip", True):
        assert 0 < int(params[:, :, 4].sum()) < params.shape[0] * params.shape[1]  # some flipped, some not


def test_the_batched_padcrop_refuses_a_padding_it_cannot_reflect():
    from PIL import Image

    with pytest.raises(SslcoreError, match="padding 8 needs images larger than 8 px"):
        build_padcrop(PadCropViewsConfig(size=8, padding=8, pipeline="batched"))(Image.new("RGB", (8, 8)))


def test_jem_trains_with_batched_views_as_with_pil_views(tmp_path):
    pil = [r["loss"] for r in _train("jem_smoke", tmp_path, run="pil") if "loss" in r]
    batched = [r["loss"] for r in _train("jem_smoke", tmp_path, "views.pipeline=batched", run="batched")
               if "loss" in r]
    assert batched == pytest.approx(pil, rel=1e-4)

# -- 2 processes x B = 1 process x 2B (HDGE: the queue is replicated) ----------------------------------------------
BATCH, STEPS = 8, 3
HDGE = {
    "backbone": {"kind": "tiny", "width": 6, "batch_norm": False},
    "key_store": {"kind": "queue", "size": 16},
    "method": {"kind": "hdge", "num_classes": 3, "temperature": 0.5},
}


def _steps(rank: int, world: int) -> dict:
    torch.manual_seed(0)
    method = build_method(HDGE, host=tiny_host("jem", jem_plugin))
    model = torch.nn.parallel.DistributedDataParallel(method, broadcast_buffers=False) if world > 1 else method
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5)
    data = torch.Generator().manual_seed(1)
    rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    losses = []
    for step in range(STEPS):
        images, labels = torch.randn(BATCH, 3, 8, 8, generator=data), torch.randint(0, 3, (BATCH,), generator=data)
        batch = Batch(views=[images[rows]], index=torch.arange(BATCH)[rows], label=labels[rows])
        losses.append(training_step(method, optimizer, batch, StepInfo(step, STEPS, STEPS), model=model).loss.detach())
    buffer = build_replay(ReplayConfig(size=16))
    return {
        "world": distributed.world_size(),
        "losses": torch.stack(losses),
        "queue": method.queue.queue.clone(),
        "params": [p.detach().clone() for p in method.parameters()],
        "buffer_size": buffer.size,
    }


@pytest.mark.distributed
def test_hdge_on_two_processes_equals_one_process_with_the_global_batch():
    ranks = run_distributed(_steps, world_size=2)
    single = _steps(0, 1)
    assert [r["world"] for r in ranks] == [2, 2]
    torch.testing.assert_close((ranks[0]["losses"] + ranks[1]["losses"]) / 2, single["losses"])
    for result in ranks:
        torch.testing.assert_close(result["queue"], single["queue"])  # replicated: every rank's keys enqueued
        for got, want in zip(result["params"], single["params"], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert result["buffer_size"] == 8  # the replay buffer is sharded: 16 images over 2 processes
    assert single["buffer_size"] == 16


# -- the engine -------------------------------------------------------------------------------------------------------
def _train(name: str, tmp_path, *overrides: str, run: str | None = None) -> list[dict]:
    host = PluginHost()
    recipe = resolve(
        name,
        host,
        [
            "run.steps=2",
            f"run.name={run or name}",
            f"run.output_dir={tmp_path}",
            "data.size=16",
            "views.size=16",
            "eval.transform.size=16",
            "eval.limit_train=16",
            "eval.limit_eval=16",
            *overrides,
        ],
    )
    Trainer(recipe, host).fit()
    return [json.loads(line) for line in (tmp_path / (run or name) / "metrics.jsonl").read_text().splitlines()]


def test_jem_logs_energy_and_cross_entropy_separately_and_writes_samples(tmp_path):
    records = [r for r in _train("jem_smoke", tmp_path) if "loss" in r]
    assert len(records) == 2
    for record in records:
        assert record["loss"] == pytest.approx(record["ce"] + record["energy_data"] - record["energy_samples"], 1e-5)
        assert record["p_x_loss"] == pytest.approx(record["energy_data"] - record["energy_samples"], abs=1e-6)
    final = json.loads((tmp_path / "jem_smoke" / "summary.json").read_text())
    assert {"accuracy", "ece", "auroc_interp_px", "auroc_uniform_py", "auroc_constant_px"} <= set(final)
    assert (tmp_path / "jem_smoke" / "samples.png").is_file()
    (shard,) = (tmp_path / "jem_smoke" / "checkpoints" / "step_00000002").glob("sharded_state_rank*.pt")
    saved = torch.load(shard, weights_only=True)["buffer"]["images"]  # the buffer's own part, per rank
    assert saved.shape == (64, 3, 16, 16) and bool((saved.abs() <= 1).float().mean() < 1)  # chains moved past U(-1, 1)


def test_the_plain_classifier_baseline_and_hdge_log_their_terms(tmp_path):
    plain = [r for r in _train("jem_smoke", tmp_path, "method.p_x_weight=0", run="plain") if "loss" in r]
    assert all(r["loss"] == pytest.approx(r["ce"], 1e-6) and "energy_data" not in r for r in plain)
    assert not (tmp_path / "plain" / "samples.png").exists()  # no chain ever ran
    hdge = [r for r in _train("hdge_smoke", tmp_path) if "loss" in r]
    assert all(r["loss"] == pytest.approx(r["ce"] + r["contrastive"], 1e-5) for r in hdge)


def test_hdge_with_the_marginal_term_needs_a_sample_buffer():
    host = PluginHost()
    with pytest.raises(SslcoreError, match="sample_buffer"):
        build_method(
            {
                **HDGE,
                "backbone": {"kind": "wrn", "depth": 10, "width": 1},
                "method": {"kind": "hdge", "p_x_weight": 1.0},
            },
            host=host,
        )


def test_labels_are_required():
    method = build_method(
        {
            "backbone": {"kind": "wrn", "depth": 10, "width": 1},
            "method": {"kind": "jem"},
            "sample_buffer": {"kind": "replay", "size": 8},
        }
    )
    with pytest.raises(SslcoreError, match="need labels"):
        method(Batch(views=[torch.zeros(2, 3, 8, 8)], index=torch.arange(2)), StepInfo(0, 1, 1))


@pytest.mark.parametrize("name", ["jem_wrn28_10", "hdge_wrn28_10", "jem_cifar10", "hdge_cifar10"])
def test_the_shipped_recipes_resolve(name):
    recipe = resolve(name, PluginHost())
    assert recipe.components["method"].kind in ("jem", "hdge")
