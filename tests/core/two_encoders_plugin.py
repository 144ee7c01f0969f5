"""A test plugin with two encoders, as CMC has: ``[backbones.a]`` and ``[backbones.b]``, each with its head
(``[heads.a]``, ``[heads.b]``); the loss is the symmetric negative cosine between one encoder's output on the first
view and the other's on the second. Both encoders are exported; the kNN monitor sees their concatenated features.

``knn_width`` is the built-in kNN evaluator that also reports the width of the features it was given.
"""

from __future__ import annotations

import attrs
import torch.nn.functional as F
from torch import nn

from sslcore import Batch, Method, MethodOutput, MethodParts, StepInfo, hookimpl
from sslcore.evaluation.knn import KnnConfig, KnnEvaluator
from sslcore.export import ConcatFeatures


@attrs.frozen(kw_only=True)
class TwoEncodersConfig:
    pass


class TwoEncoders(Method):
    def __init__(self, parts: MethodParts) -> None:
        super().__init__()
        self.encoder_a, self.encoder_b = parts.backbone("a"), parts.backbone("b")
        self.head_a = parts.head("a", self.encoder_a.num_features)
        self.head_b = parts.head("b", self.encoder_b.num_features)

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:
        first, second = batch.views[:2]
        a1, a2 = self.head_a(self.encoder_a(first)), self.head_a(self.encoder_a(second))
        b1, b2 = self.head_b(self.encoder_b(first)), self.head_b(self.encoder_b(second))
        return MethodOutput(-(F.cosine_similarity(a1, b2).mean() + F.cosine_similarity(a2, b1).mean()) / 2)

    def evaluation_network(self) -> nn.Module:
        return ConcatFeatures(self.exported_networks())

    def exported_networks(self) -> dict[str, nn.Module]:
        return {"a": self.encoder_a, "b": self.encoder_b}


class KnnWidth(KnnEvaluator):
    def evaluate(self, backbone, train_dataset, eval_dataset, device):  # type: ignore[no-untyped-def]
        widths: set[int] = set()
        hook = backbone.register_forward_hook(lambda module, inputs, output: widths.add(output.shape[1]))
        try:
            results = super().evaluate(backbone, train_dataset, eval_dataset, device)
        finally:
            hook.remove()
        (width,) = widths
        return {**results, "feature_width": float(width)}


@hookimpl
def sslcore_register_methods(registry):
    registry.add("two_encoders", lambda config, parts: TwoEncoders(parts), TwoEncodersConfig,
                 description="two named encoders with heads, negative cosine across them")


@hookimpl
def sslcore_register_evaluators(registry):
    registry.add("knn_width", KnnWidth, KnnConfig, description="kNN that reports its feature width")
