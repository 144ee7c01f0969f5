"""Linear probe: separable features are fitted exactly; the evaluator works end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sslcore.data.sources import DigitsSourceConfig, build_digits
from sslcore.errors import SslcoreError
from sslcore.evaluation.features import extract_features
from sslcore.evaluation.linear_probe import LinearProbeConfig, LinearProbeEvaluator, train_linear_probe
from sslcore.data.loaders import make_eval_loader
from sslcore.data.views import EvalViewsConfig, build_eval


def _separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels from a random linear teacher over 4 classes, with a margin: a linear model can be exact."""
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(16, 4, generator=torch.Generator().manual_seed(99))
    features = torch.randn(4 * n, 16, generator=generator) * 3 + 1
    logits = features @ teacher
    top2 = logits.topk(2, dim=1).values
    keep = (top2[:, 0] - top2[:, 1]) > 1.0
    return features[keep][:n], logits[keep][:n].argmax(1)


def test_linearly_separable_features_are_classified_exactly():
    train_x, train_y = _separable(400, seed=0)
    test_x, test_y = _separable(200, seed=1)
    probe = train_linear_probe(train_x, train_y, 4, epochs=60, lr=0.1, weight_decay=0.0, batch_size=64)
    with torch.no_grad():
        assert (probe(train_x).argmax(1) == train_y).float().mean().item() == 1.0
        assert (probe(test_x).argmax(1) == test_y).float().mean().item() >= 0.95


def test_probe_is_deterministic_and_invariant_to_feature_scale():
    x, y = _separable(200, seed=2)
    first = train_linear_probe(x, y, 4, epochs=5, lr=0.1, weight_decay=1e-4, batch_size=32, seed=7)
    again = train_linear_probe(x, y, 4, epochs=5, lr=0.1, weight_decay=1e-4, batch_size=32, seed=7)
    assert torch.equal(first[1].weight, again[1].weight)
    scaled = train_linear_probe(x * 1000 + 5, y, 4, epochs=5, lr=0.1, weight_decay=1e-4, batch_size=32, seed=7)
    assert torch.allclose(first[1].weight, scaled[1].weight, atol=1e-4)  # standardized inputs
    with pytest.raises(ValueError, match="features"):
        train_linear_probe(x, y[:-1], 4, epochs=1, lr=0.1, weight_decay=0.0, batch_size=32)


class Pool(nn.Module):
    num_features = 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, 2).flatten(1)


@pytest.fixture(scope="module")
def digits():
    config = DigitsSourceConfig(size=16)
    return build_digits(config, "train"), build_digits(config, "test")


def test_linear_evaluator_on_digits(digits):
    config = LinearProbeConfig(epochs=20, num_workers=0, limit_train=800)
    metrics = LinearProbeEvaluator(config).evaluate(Pool(), digits[0], digits[1], "cpu")
    assert set(metrics) == {"linear_top1", "linear_top5"}
    assert metrics["linear_top1"] > 90.0 and metrics["linear_top5"] >= metrics["linear_top1"]
    with pytest.raises(SslcoreError, match="linear evaluation needs labels, but the train split has none"):
        LinearProbeEvaluator(config).evaluate(Pool(), digits[0].remove_columns("label"), digits[1], "cpu")


def test_extract_features_restores_mode_and_rejects_unpooled_outputs(digits):
    loader = make_eval_loader(digits[1].select(range(10)), build_eval(EvalViewsConfig()), batch_size=4, num_workers=0)
    backbone = nn.Sequential(nn.BatchNorm2d(3), nn.Flatten()).train()
    features, labels = extract_features(backbone, loader, "cpu")
    assert features.shape == (10, 3 * 16 * 16) and labels.tolist() == digits[1]["label"][:10]
    assert backbone.training
    with pytest.raises(SslcoreError, match=r"expected \(batch, features\)"):
        extract_features(nn.Identity(), loader, "cpu")
