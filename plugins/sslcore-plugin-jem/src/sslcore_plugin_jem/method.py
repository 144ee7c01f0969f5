"""JEM and HDGE: one network trained as a classifier p(y | x) and as an energy-based model of its inputs.

A classifier's logits f(x) define an energy-based model (JEM, Grathwohl et al. 2020, sec. 3, Eq. 5-6):
p(x, y) = exp(f(x)[y]) / Z, so log p(x) = logsumexp_y f(x)[y] - log Z and the energy is E(x) = -logsumexp_y f(x)[y].

``jem`` (wgrathwohl/JEM ``train_wrn_ebm.py``): loss = ``ce_weight`` * CE(f(x), y) + ``p_x_weight`` * (E(x_data) -
E(x_sampled)), the batch means of both energies, with x_sampled from persistent SGLD chains (``[sample_buffer]``,
Eq. 7 / sec. 4); the sampler runs with the network in eval mode and the energies are computed in train mode, as
``sample_q`` does. No energy regulariser is added (the official code has none). The official code draws the data
of the two terms as two independent batches of the same labelled set; here they are one batch (the same
expectation). ``p_x_weight = 0`` trains a plain classifier (``--p_x_weight 0``), the baseline of the same recipe.

``hdge`` (Liu and Abbeel 2020, sec. 3, Eq. 8-10; forhaoliu/hybrid-discriminative-generative ``model.py`` ``HYM.joint``
and ``train_wrn.py``): log p(x | y) is approximated contrastively against the K logit vectors of past batches, kept
in a queue (``[key_store]``, kind ``queue``, K = ``--contrast_k`` 65536; Figure 4 of the paper: larger K helps).
With the one-hot label d, the normalised logits p = f(x) / ||f(x)|| and the normalised queue entries q_k:

    l_pos = logsumexp_c d[c] * p[c],   l_neg[k] = logsumexp_c d[c] * q_k[c],
    contrastive = CE([l_pos, l_neg[1..K]] / T, target 0),     T = ``--contrast_t`` 0.1,

exactly as the code computes it (logsumexp over classes of the masked vector, not the paper's single entry). The
loss is ``ce_weight`` * CE + ``contrast_weight`` * contrastive (``--pyxce 1 --pxycontrast 1``), plus, with
``p_x_weight`` > 0, JEM's SGLD term for log p(x) ("HDGE + marginal likelihood", ``--pxsgld 1``). This step's logits
(detached) are enqueued after the optimizer step. The official code computes the logits twice, once for each term;
here once (identical without BatchNorm or dropout, its default).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.sample_buffers import SampleBuffer
from sslcore.errors import SslcoreError
from sslcore.method import Batch, KeyWrite, Method, MethodOutput, MethodParts, StepInfo
from sslcore_plugin_jem.config import HdgeConfig, JemConfig


def energy(logits: torch.Tensor) -> torch.Tensor:
    """E(x) = -logsumexp_y f(x)[y] of each row of logits ``(n, classes)``."""
    return -logits.logsumexp(dim=1)


def hdge_contrastive(
    logits: torch.Tensor, labels: torch.Tensor, bank: torch.Tensor, temperature: float
) -> torch.Tensor:
    """HDGE's contrastive estimate of -log p(x | y): ``logits`` ``(n, C)``, ``labels`` ``(n,)``, ``bank`` the queue's
    ``(K, C)`` past logits; the mean over the n queries (``HYM.joint`` then ``CrossEntropyLoss``)."""
    dist = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    positive = torch.logsumexp(dist * F.normalize(logits, dim=1), dim=1, keepdim=True)
    negatives = torch.logsumexp(torch.einsum("nc,kc->nck", dist, F.normalize(bank.to(logits.dtype), dim=1)), dim=1)
    scores = torch.cat([positive, negatives], dim=1) / temperature
    return F.cross_entropy(scores, torch.zeros(len(scores), dtype=torch.long, device=scores.device))


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """``module`` in eval mode inside the block, as it was after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class EnergyClassifier(nn.Module):
    """``f(x) = class_output(backbone(x))``: the logits, read both as a classifier and as an energy."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.class_output = nn.Linear(backbone.num_features, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.class_output(self.backbone(images))


class HybridMethod(Method):
    """What JEM and HDGE share: the classifier, its cross-entropy, the SGLD term for log p(x) and the samples."""

    def __init__(self, config: JemConfig | HdgeConfig, parts: MethodParts, *, buffer: bool) -> None:
        super().__init__()
        self.config = config
        self.backbone = parts.backbone()
        self.classifier = EnergyClassifier(self.backbone, config.num_classes)
        self.buffer: SampleBuffer | None = parts.component("sample_buffer") if buffer else None

    def evaluation_network(self) -> nn.Module:
        """The classifier: the evaluator reads logits (``hybrid``: accuracy, ECE, OOD AUROC)."""
        return self.classifier

    def _labelled(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.label is None:
            raise SslcoreError(
                "JEM and HDGE train a classifier and need labels, but the batch has none",
                hint="use a labelled dataset ([data] labels, label_column)",
            )
        return batch.views[0], batch.label

    def classification(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        ce = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean() * 100
        return self.config.ce_weight * ce, {"ce": ce.detach(), "train_batch_accuracy": accuracy}

    def marginal(self, images: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, dict, list[KeyWrite]]:
        """``p_x_weight`` * (E(x_data) - E(x_sampled)) with SGLD samples from the buffer, the energies to log and
        the buffer write of the chains' final states."""
        start, slots = self.buffer.draw(images)
        with eval_mode(self.classifier):
            samples = self.config.sgld.sample(lambda x: self.classifier(x).logsumexp(dim=1), start)
        energy_data = energy(logits).mean()
        energy_samples = energy(self.classifier(samples)).mean()
        term = energy_data - energy_samples
        logs = {
            "energy_data": energy_data.detach(),
            "energy_samples": energy_samples.detach(),
            "p_x_loss": term.detach(),
        }
        return self.config.p_x_weight * term, logs, [KeyWrite(self.buffer, samples, index=slots)]

    def write_outputs(self, run_dir: Path) -> None:
        """``samples.png``: the first ``grid`` images of this process's buffer, clamped to [-1, 1] and min-max
        scaled, ``sqrt(grid)`` per row (the official ``plot``)."""
        if self.buffer is None or self.buffer.contents().numel() == 0:
            return
        from torchvision.utils import save_image

        images = self.buffer.contents()[: self.config.grid].detach().float().cpu()
        save_image(images.clamp(-1, 1), run_dir / "samples.png", normalize=True, nrow=math.isqrt(len(images)))


class Jem(HybridMethod):
    """JEM: cross-entropy plus the SGLD estimate of the gradient of -log p(x)."""

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:  # type: ignore[override]
        images, labels = self._labelled(batch)
        logits = self.classifier(images)
        loss, logs = self.classification(logits, labels)
        writes: list[KeyWrite] = []
        if self.config.p_x_weight > 0:
            term, more, writes = self.marginal(images, logits)
            loss, logs = loss + term, {**logs, **more}
        return MethodOutput(loss, logs=logs, writes=writes)


class Hdge(HybridMethod):
    """HDGE: cross-entropy plus the contrastive estimate of -log p(x | y) against a queue of past logits."""

    def __init__(self, config: HdgeConfig, parts: MethodParts) -> None:
        super().__init__(config, parts, buffer=config.p_x_weight > 0)
        self.queue = parts.key_store(config.num_classes)

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:  # type: ignore[override]
        images, labels = self._labelled(batch)
        logits = self.classifier(images)
        loss, logs = self.classification(logits, labels)
        bank = self.queue.read(logits).bank
        contrastive = hdge_contrastive(logits, labels, bank, self.config.temperature)
        loss = loss + self.config.contrast_weight * contrastive
        logs["contrastive"] = contrastive.detach()
        writes = [KeyWrite(self.queue, logits.detach())]
        if self.config.p_x_weight > 0:
            term, more, buffer_writes = self.marginal(images, logits)
            loss, logs, writes = loss + term, {**logs, **more}, writes + buffer_writes
        return MethodOutput(loss, logs=logs, writes=writes)


def build_jem(config: JemConfig, parts: MethodParts) -> Jem:
    """JEM: a classifier trained as an energy-based model, CE + E(x_data) - E(x_SGLD) (Grathwohl et al. 2020)."""
    return Jem(config, parts, buffer=True)


def build_hdge(config: HdgeConfig, parts: MethodParts) -> Hdge:
    """HDGE: CE + a contrastive estimate of log p(x | y) against a queue of past logits (Liu and Abbeel 2020)."""
    return Hdge(config, parts)
