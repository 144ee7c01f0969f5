"""Weighted kNN: hand-computed votes, ties, chunking against a reference, and the evaluator end to end."""

from __future__ import annotations

import math

import datasets
import pytest
import torch
from PIL import Image
from torch import nn

from sslcore.config import structure
from sslcore.data.sources import DigitsSourceConfig, build_digits
from sslcore.data.views import EvalViewsConfig
from sslcore.errors import SslcoreError
from sslcore.evaluation.features import topk_accuracy
from sslcore.evaluation.knn import KnnConfig, KnnEvaluator, knn_classify
from sslcore.evaluation.registration import Evaluator, sslcore_register_evaluators
from sslcore.registry import Registry


def _unit(cos: float, sign: float = 1.0) -> list[float]:
    return [cos, sign * math.sqrt(1 - cos * cos)]


# query (1, 0); neighbours by cosine: 0.99 (class 0), 0.5 and 0.5 (class 1), -1 (class 2)
LENGTHS = torch.tensor([[3.0], [0.5], [2.0], [7.0]])
TRAIN = torch.tensor([_unit(0.99), _unit(0.5), _unit(0.5, -1), [-1.0, 0.0]]) * LENGTHS
LABELS = torch.tensor([0, 1, 1, 2])
QUERY = torch.tensor([[5.0, 0.0]])  # features are normalized inside: lengths do not matter


def test_votes_are_summed_exp_similarity_over_temperature():
    scores = knn_classify(TRAIN, LABELS, QUERY, k=3, temperature=0.1, num_classes=3)
    assert scores[0].tolist() == pytest.approx([math.exp(9.9), 2 * math.exp(5.0), 0.0], rel=1e-4)
    assert scores.argmax(1).item() == 0  # one close neighbour outvotes two far ones at T = 0.1 ...
    flat = knn_classify(TRAIN, LABELS, QUERY, k=3, temperature=10.0, num_classes=3)
    assert flat[0].tolist() == pytest.approx([math.exp(0.099), 2 * math.exp(0.05), 0.0], rel=1e-5)
    assert flat.argmax(1).item() == 1  # ... while a flat weighting is a majority vote


def test_tied_kth_neighbours_and_k_above_the_training_size():
    # k = 2: the two class-1 neighbours tie for the second place; either one gives the same votes
    scores = knn_classify(TRAIN, LABELS, QUERY, k=2, temperature=0.1, num_classes=3)
    assert scores[0].tolist() == pytest.approx([math.exp(9.9), math.exp(5.0), 0.0], rel=1e-4)
    every = knn_classify(TRAIN, LABELS, QUERY, k=50, temperature=0.5, num_classes=4)  # k > 4: all neighbours
    assert every[0].tolist() == pytest.approx([math.exp(1.98), 2 * math.exp(1.0), math.exp(-2.0), 0.0], rel=1e-5)


def test_tied_class_votes_rank_the_lower_class_first():
    train = torch.tensor([_unit(0.8), _unit(0.8, -1)])
    scores = knn_classify(train, torch.tensor([2, 1]), QUERY, k=2, temperature=0.1, num_classes=3)
    assert scores[0, 1] == scores[0, 2]
    assert topk_accuracy(scores, torch.tensor([1]), (1,))[1] == 100.0
    assert topk_accuracy(scores, torch.tensor([2]), (1, 2)) == {1: 0.0, 2: 100.0}


def _reference_votes(train, labels, test, k, temperature, num_classes):
    """Explicit loops: cosine to every training point, sort, sum exp(s / T) of the k best per class."""
    train = [row / row.norm() for row in train.double()]
    rows = []
    for query in test.double():
        query = query / query.norm()
        sims = sorted(((float(query @ t), int(y)) for t, y in zip(train, labels)), reverse=True)[:k]
        votes = [0.0] * num_classes
        for sim, label in sims:
            votes[label] += math.exp(sim / temperature)
        rows.append(votes)
    return torch.tensor(rows, dtype=torch.float64)


def test_chunked_equals_an_unchunked_reference():
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(300, 8, generator=generator)
    labels = torch.randint(0, 5, (300,), generator=generator)
    test = torch.randn(70, 8, generator=generator)
    expected = _reference_votes(train, labels, test, k=20, temperature=0.07, num_classes=5)
    chunked = knn_classify(train, labels, test, k=20, temperature=0.07, num_classes=5, query_chunk=16, train_chunk=37)
    whole = knn_classify(train, labels, test, k=20, temperature=0.07, num_classes=5)
    assert torch.allclose(chunked.double(), expected, rtol=1e-4)
    assert torch.allclose(whole.double(), expected, rtol=1e-4)


def test_input_checks():
    with pytest.raises(ValueError, match="equal D"):
        knn_classify(TRAIN, LABELS, torch.zeros(1, 3), k=1, temperature=0.1, num_classes=3)
    with pytest.raises(ValueError, match="train_labels"):
        knn_classify(TRAIN, LABELS[:2], QUERY, k=1, temperature=0.1, num_classes=3)
    with pytest.raises(ValueError, match="positive"):
        knn_classify(TRAIN, LABELS, QUERY, k=0, temperature=0.1, num_classes=3)


class CountingPool(nn.Module):
    """A parameter-free "backbone": 2x2 average-pooled pixels; counts the images it sees."""

    num_features = 192

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not self.training
        self.seen += x.shape[0]
        return self.pool(x).flatten(1)


@pytest.fixture(scope="module")
def digits():
    config = DigitsSourceConfig(size=16)
    return build_digits(config, "train"), build_digits(config, "test")


def test_knn_evaluator_on_digits(digits):
    backbone = CountingPool().train()
    table = {"k": 20, "limit_train": 1000, "batch_size": 128, "num_workers": 0}
    config = structure(table, KnnConfig, where="t", path="eval")
    metrics = KnnEvaluator(config).evaluate(backbone, digits[0], digits[1], "cpu")
    assert set(metrics) == {"knn_top1", "knn_top5"}
    assert metrics["knn_top1"] > 90.0 and metrics["knn_top5"] >= metrics["knn_top1"]
    assert backbone.seen == 1000 + 360 and backbone.training


def test_raw_pixels_are_scored_once_beside_the_backbone(digits):
    config = KnnConfig(k=20, limit_train=200, limit_eval=100, num_workers=0, raw_pixels=True,
                       transform=EvalViewsConfig(size=16))
    evaluator = KnnEvaluator(config)
    scored, accuracy = [], evaluator._accuracy
    evaluator._accuracy = lambda network, *rest: scored.append(type(network).__name__) or accuracy(network, *rest)
    first = evaluator.evaluate(CountingPool(), digits[0], digits[1], "cpu")
    second = evaluator.evaluate(CountingPool(), digits[0], digits[1], "cpu")
    assert set(first) == {"knn_top1", "knn_top5", "raw_pixels_knn_top1"} and second == first
    assert scored == ["CountingPool", "Flatten", "CountingPool"]
    assert first["raw_pixels_knn_top1"] > 80.0  # 16 px digits: raw pixels are a strong kNN baseline
    assert KnnConfig().raw_pixels is False


def test_knn_evaluator_needs_valid_labels(digits):
    evaluator = KnnEvaluator(KnnConfig(num_workers=0, limit_train=50, limit_eval=20))
    unlabeled = digits[1].remove_columns("label")
    with pytest.raises(SslcoreError, match="needs labels, but the eval split has none"):
        evaluator.evaluate(CountingPool(), digits[0], unlabeled, "cpu")
    marked = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (16, 16))] * 2, "label": [0, -1]},
        features=datasets.Features(image=datasets.Image(), label=datasets.Value("int64")),
    )
    with pytest.raises(SslcoreError, match="labels outside"):
        evaluator.evaluate(CountingPool(), digits[0], marked, "cpu")


def test_evaluators_are_registered():
    registry = Registry("evaluator")
    sslcore_register_evaluators(registry)
    assert registry.names() == ["knn", "linear"]
    assert isinstance(registry.get("knn").build(KnnConfig()), Evaluator)
