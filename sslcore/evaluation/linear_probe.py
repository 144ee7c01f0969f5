"""Linear probe: a softmax classifier trained on frozen, precomputed features.

The standard linear evaluation (MoCo ``main_lincls.py``, SimCLR sec. B.6) trains a linear layer on a frozen
backbone with SGD, momentum 0.9 and a cosine schedule. Here the features are computed once, from the
evaluation view (no augmentation: a cheap, deterministic monitor rather than the full 100-epoch protocol), and
standardized with the training set's mean and standard deviation, as MAE's probe does with a BatchNorm without
affine parameters before the linear layer (He et al. 2022, ``main_linprobe.py``): the learning rate then does
not depend on the scale of the backbone's features.
"""

from __future__ import annotations

import math

import datasets
import torch
import torch.nn.functional as nnf
from torch import nn

from sslcore.data.views import build_eval
from sslcore.evaluation.evaluator_configs import LinearProbeConfig
from sslcore.evaluation.features import labelled_features, topk_accuracy


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed statistics."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def train_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    momentum: float = 0.9,
    seed: int = 0,
) -> nn.Sequential:
    """Fit ``Standardize -> Linear`` to (features, labels) by minibatch SGD with cross-entropy.

    The layer starts at zero (the problem is convex), the learning rate follows a cosine from ``lr`` to 0
    over all steps, and the batch order comes from a generator seeded with ``seed``: the result is
    deterministic on a given device.
    """
    if features.dim() != 2 or labels.shape != (features.shape[0],) or features.shape[0] == 0:
        raise ValueError(
            f"need features (N, D) and labels (N,), N > 0; got {tuple(features.shape)}, {tuple(labels.shape)}"
        )
    features = features.float()
    labels = labels.to(features.device, torch.long)
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False).clamp_min(1e-6)
    linear = nn.Linear(features.shape[1], num_classes).to(features.device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    probe = nn.Sequential(Standardize(mean, std), linear)
    optimizer = torch.optim.SGD(linear.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(features.shape[0] / batch_size)
    total = epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(seed)
    step = 0
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(features.shape[0], generator=generator).to(features.device)
            for start in range(0, features.shape[0], batch_size):
                batch = order[start : start + batch_size]
                for group in optimizer.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                loss = nnf.cross_entropy(probe(features[batch]), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
    return probe.eval()


class LinearProbeEvaluator:
    """Reports ``linear_top1`` (and ``linear_top5`` with more than 5 classes), in percent, on the eval split.

    Features are extracted on the calling process (the engine calls it on the main process only).
    """

    def __init__(self, config: LinearProbeConfig) -> None:
        self.config = config
        self.transform = build_eval(config.transform)

    def evaluate(
        self,
        backbone: nn.Module,
        train_dataset: datasets.Dataset,
        eval_dataset: datasets.Dataset,
        device: torch.device | str,
    ) -> dict[str, float]:
        config = self.config
        data = labelled_features(
            backbone, train_dataset, eval_dataset, self.transform, evaluator="linear", limit_train=config.limit_train,
            limit_eval=config.limit_eval, batch_size=config.batch_size, num_workers=config.num_workers, device=device,
        )
        probe = train_linear_probe(
            data.train_features,
            data.train_labels,
            data.num_classes,
            epochs=config.epochs,
            lr=config.lr,
            weight_decay=config.weight_decay,
            batch_size=config.probe_batch_size,
            momentum=config.momentum,
            seed=config.seed,
        )
        with torch.no_grad():
            logits = probe(data.test_features)
        ks = (1, 5) if data.num_classes > 5 else (1,)
        accuracy = topk_accuracy(logits, data.test_labels, ks)
        return {f"linear_top{k}": accuracy[k] for k in ks}


def build_linear_probe(config: LinearProbeConfig) -> LinearProbeEvaluator:
    """Linear probe (SGD, cosine) on standardized frozen features: linear_top1 / linear_top5."""
    return LinearProbeEvaluator(config)
