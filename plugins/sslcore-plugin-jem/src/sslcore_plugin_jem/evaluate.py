"""The ``hybrid`` evaluator: a classifier's accuracy, calibration and out-of-distribution detection.

The engine passes ``Method.evaluation_network()``, which for JEM and HDGE maps images to class logits f(x). Reported:

- ``accuracy`` (and ``train_accuracy`` on the first ``limit_train`` training images), in percent;
- ``ece``: expected calibration error in percent (JEM sec. 5.2), over equal-width confidence bins (lower, upper]
  as ``eval_ece`` of forhaoliu/hybrid-discriminative-generative ``eval_wrn.py``, which uses 20 bins; the default
  here is the usual 15 (Guo et al. 2017);
- ``auroc_<set>_<score>``: the AUROC of telling the test images (positives) from an out-of-distribution set, as
  ``OODAUC`` of wgrathwohl/JEM ``eval_wrn_ebm.py`` (JEM Table 2), with the scores ``px`` = log p(x) + log Z =
  logsumexp_y f(x)[y] and ``py`` = max_y p(y | x). The sets are made from the test split itself, so a run needs no
  other download: ``interp``, the average of each test image and another one (JEM's "CIFAR10 Interp"), plus
  ``uniform`` noise images and ``constant`` images of one random colour (pixel values ~ U(0, 1), normalised like the
  test images; the noise and constant sets of Hendrycks et al. 2019, "Deep Anomaly Detection with Outlier
  Exposure", Table 7). As the official transform, ``noise`` adds N(0, noise^2) to every image (``--sigma``).

Every random number comes from a generator seeded with ``seed``: the sets are the same at every evaluation.
"""

from __future__ import annotations

import datasets
import torch
import torch.nn.functional as F
from torch import nn

from sslcore.data.loaders import make_eval_loader
from sslcore.data.views import build_eval
from sslcore.evaluation.features import first_rows, require_labels
from sslcore_plugin_jem.config import HybridEvalConfig


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE = sum over bins b of |B_b| / n * |accuracy(B_b) - confidence(B_b)|, with the confidence (the largest
    probability) of each sample binned into ``bins`` equal intervals (lower, upper] of [0, 1]; a fraction."""
    confidence, prediction = probabilities.max(dim=1)
    correct = (prediction == labels).float()
    edges = torch.linspace(0, 1, bins + 1, dtype=confidence.dtype, device=confidence.device)
    which = torch.bucketize(confidence, edges[1:-1], right=False)  # bin b holds (edges[b], edges[b + 1]]
    total = confidence.new_zeros(())
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.float().mean() * (confidence[members].mean() - correct[members].mean()).abs()
    return float(total)


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """The area under the ROC curve of scores meant to be higher for ``positive`` than for ``negative``: the
    probability that a random positive outscores a random negative, ties counting one half (Mann-Whitney U)."""
    if positive.numel() == 0 or negative.numel() == 0:
        raise ValueError("AUROC needs at least one positive and one negative score")
    ordered = torch.sort(negative.double().flatten()).values
    scores = positive.double().flatten()
    below = torch.searchsorted(ordered, scores, side="left").double()
    tied = torch.searchsorted(ordered, scores, side="right").double() - below
    return float((below + 0.5 * tied).sum() / (scores.numel() * ordered.numel()))


def ood_images(
    name: str, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """An out-of-distribution set as large as ``images`` (normalised test images ``(n, C, H, W)``)."""
    if name == "interp":
        partner = torch.randperm(len(images), generator=generator)
        return (images + images[partner]) / 2
    shape = images.shape if name == "uniform" else (*images.shape[:2], 1, 1)
    pixels = torch.rand(shape, generator=generator).expand(images.shape)
    return (pixels - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


class HybridEvaluator:
    """Accuracy, ECE and OOD AUROC of a network that outputs class logits."""

    def __init__(self, config: HybridEvalConfig) -> None:
        self.config = config
        self.transform = build_eval(config.transform)

    def _images(self, dataset: datasets.Dataset, limit: int | None, role: str) -> tuple[torch.Tensor, torch.Tensor]:
        rows = first_rows(dataset, limit)
        labels = require_labels(rows, "hybrid", role)
        loader = make_eval_loader(
            rows, self.transform, batch_size=self.config.batch_size, num_workers=self.config.num_workers
        )
        return torch.cat([batch["views"][0] for batch in loader]), labels

    @torch.no_grad()
    def _logits(self, network: nn.Module, images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        step = self.config.batch_size
        return torch.cat([network(images[i : i + step].to(device)).float().cpu() for i in range(0, len(images), step)])

    def evaluate(
        self,
        backbone: nn.Module,
        train_dataset: datasets.Dataset,
        eval_dataset: datasets.Dataset,
        device: torch.device | str,
    ) -> dict[str, float]:
        config = self.config
        generator = torch.Generator().manual_seed(config.seed)
        was_training = backbone.training
        backbone.eval()
        try:
            images, labels = self._images(eval_dataset, config.limit_eval, "eval")
            noisy = self._noised(images, generator)
            logits = self._logits(backbone, noisy, device)
            probabilities = logits.softmax(dim=1)
            results = {
                "accuracy": 100.0 * float((probabilities.argmax(dim=1) == labels).float().mean()),
                "ece": 100.0 * expected_calibration_error(probabilities, labels, config.bins),
            }
            if config.limit_train is not None:
                train_images, train_labels = self._images(train_dataset, config.limit_train, "train")
                train_logits = self._logits(backbone, self._noised(train_images, generator), device)
                results["train_accuracy"] = 100.0 * float((train_logits.argmax(dim=1) == train_labels).float().mean())
            mean, std = (torch.tensor(c, dtype=images.dtype) for c in (config.transform.mean, config.transform.std))
            scores = {"px": logits.logsumexp(dim=1), "py": probabilities.max(dim=1).values}
            for name in config.ood:
                outside = self._logits(
                    backbone, self._noised(ood_images(name, images, mean, std, generator), generator), device
                )
                outside_scores = {"px": outside.logsumexp(dim=1), "py": F.softmax(outside, dim=1).max(dim=1).values}
                for score, inside in scores.items():
                    results[f"auroc_{name}_{score}"] = auroc(inside, outside_scores[score])
        finally:
            backbone.train(was_training)
        return results

    def _noised(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.config.noise:
            return images
        return images + self.config.noise * torch.randn(images.shape, generator=generator)


def build_hybrid(config: HybridEvalConfig) -> HybridEvaluator:
    """Accuracy, expected calibration error and OOD AUROC (interpolated, noise and constant images) of a classifier."""
    return HybridEvaluator(config)
