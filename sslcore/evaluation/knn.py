"""Weighted k-nearest-neighbour classification of frozen features (Wu et al. 2018, InstDisc sec. 3.4).

A test image's k most cosine-similar training images vote for their class with weight exp(s / T); the class
with the largest summed vote wins. As ``knn_classifier`` of facebookresearch/dino ``eval_knn.py`` and ``kNN``
of zhirongw/lemniscate.pytorch ``test.py``, both with k = 200 and T = 0.07 (the paper's NCE temperature).
"""

from __future__ import annotations

import datasets
import torch
import torch.nn.functional as nnf
from torch import nn

from sslcore.data.views import build_eval
from sslcore.evaluation.evaluator_configs import KnnConfig
from sslcore.evaluation.features import labelled_features, topk_accuracy


@torch.no_grad()
def knn_classify(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    *,
    k: int,
    temperature: float,
    num_classes: int,
    query_chunk: int = 256,
    train_chunk: int = 65536,
) -> torch.Tensor:
    """Summed class votes (N_test, num_classes) of the weighted kNN classifier; argmax is the prediction.

    Features are L2-normalized here, so similarities are cosines. ``k`` above the training-set size uses
    every training image. Memory stays at ``query_chunk`` x (``train_chunk`` + k) similarities: the k best
    neighbours are merged chunk by chunk over the training set, so no N_test x N_train matrix is formed.
    Weights are exp(s / T) exactly; T below ~0.012 overflows float32.
    """
    if train_features.dim() != 2 or test_features.dim() != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"features must be (N, D) with equal D, got train {tuple(train_features.shape)} and test "
            f"{tuple(test_features.shape)}"
        )
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError(f"train_labels must be ({train_features.shape[0]},), got {tuple(train_labels.shape)}")
    if train_features.shape[0] == 0:
        raise ValueError("kNN needs at least one training feature")
    if k <= 0 or temperature <= 0 or query_chunk <= 0 or train_chunk <= 0:
        raise ValueError("k, temperature, query_chunk and train_chunk must be positive")
    train = nnf.normalize(train_features.float(), dim=1)
    test = nnf.normalize(test_features.float(), dim=1)
    labels = train_labels.to(train.device, torch.long)
    k = min(k, train.shape[0])
    scores = test.new_zeros(test.shape[0], num_classes)
    for q_start in range(0, test.shape[0], query_chunk):
        queries = test[q_start : q_start + query_chunk]
        best_sim = queries.new_empty(queries.shape[0], 0)
        best_idx = torch.empty(queries.shape[0], 0, dtype=torch.long, device=queries.device)
        for t_start in range(0, train.shape[0], train_chunk):
            sim = queries @ train[t_start : t_start + train_chunk].T
            idx = torch.arange(t_start, t_start + sim.shape[1], device=queries.device).expand(sim.shape[0], -1)
            sim, idx = torch.cat([best_sim, sim], dim=1), torch.cat([best_idx, idx], dim=1)
            best_sim, pos = sim.topk(min(k, sim.shape[1]), dim=1)
            best_idx = idx.gather(1, pos)
        weights = (best_sim / temperature).exp()
        scores[q_start : q_start + queries.shape[0]].scatter_add_(1, labels[best_idx], weights)
    return scores


class KnnEvaluator:
    """Reports ``knn_top1`` (and ``knn_top5`` with more than 5 classes), in percent.

    Features are extracted on the calling process (the engine calls it on the main process only).
    """

    def __init__(self, config: KnnConfig) -> None:
        self.config = config
        self.transform = build_eval(config.transform)
        self.features = config.features
        self._raw_pixels: dict[str, float] = {}

    def evaluate(
        self,
        backbone: nn.Module,
        train_dataset: datasets.Dataset,
        eval_dataset: datasets.Dataset,
        device: torch.device | str,
    ) -> dict[str, float]:
        results = self._accuracy(backbone, train_dataset, eval_dataset, device)
        if self.config.raw_pixels:
            if not self._raw_pixels:
                pixels = self._accuracy(nn.Flatten(), train_dataset, eval_dataset, device)
                self._raw_pixels = {"raw_pixels_knn_top1": pixels["knn_top1"]}
            results.update(self._raw_pixels)
        return results

    def _accuracy(
        self, network: nn.Module, train_dataset: datasets.Dataset, eval_dataset: datasets.Dataset,
        device: torch.device | str,
    ) -> dict[str, float]:
        config = self.config
        data = labelled_features(
            network, train_dataset, eval_dataset, self.transform, evaluator="kNN", limit_train=config.limit_train,
            limit_eval=config.limit_eval, batch_size=config.batch_size, num_workers=config.num_workers, device=device,
        )
        scores = knn_classify(
            data.train_features,
            data.train_labels,
            data.test_features,
            k=config.k,
            temperature=config.temperature,
            num_classes=data.num_classes,
        )
        ks = (1, 5) if data.num_classes > 5 else (1,)
        accuracy = topk_accuracy(scores, data.test_labels, ks)
        return {f"knn_top{k}": accuracy[k] for k in ks}


def build_knn(config: KnnConfig) -> KnnEvaluator:
    """Weighted kNN (k = 200, T = 0.07) on L2-normalized features: knn_top1 / knn_top5."""
    return KnnEvaluator(config)
