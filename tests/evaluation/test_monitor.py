"""``[eval] features``: the engine's kNN monitor scores the backbone by default, or the method's head output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sslcore.errors import SslcoreError
from sslcore.evaluation.knn import KnnConfig, build_knn
from sslcore.evaluation.monitor import monitored_network
from sslcore.method import Method, MethodOutput
from sslcore.testing import build_method, tiny_host
from sslcore_plugin_instdisc import plugin as instdisc_plugin
from sslcore_plugin_simclr import plugin as simclr_plugin

SIMCLR = {
    "backbone": {"kind": "tiny", "width": 8},
    "heads": {"projector": {"kind": "mlp", "num_layers": 2, "hidden_dim": 16, "out_dim": 5}},
    "key_store": {"kind": "in_batch"},
    "loss": {"kind": "ntxent"},
    "method": {"kind": "simclr"},
}
INSTDISC = {
    "backbone": {"kind": "tiny", "width": 8},
    "heads": {"embedding": {"kind": "mlp", "num_layers": 1, "out_dim": 6}},
    "key_store": {"kind": "memory_bank"},
    "loss": {"kind": "nce"},
    "method": {"kind": "instdisc"},
}


def test_features_default_to_the_backbone_and_head_gives_the_projection():
    method = build_method(SIMCLR, host=tiny_host("simclr", simclr_plugin))
    assert KnnConfig().features == "backbone"
    assert monitored_network(method, build_knn(KnnConfig())) is method.backbone
    head = monitored_network(method, build_knn(KnnConfig(features="head")))
    method.eval()
    with torch.no_grad():
        assert head(torch.randn(3, 3, 8, 8)).shape == (3, 5)  # the projector's out_dim, not the backbone's 8


def test_instdisc_head_is_its_embedding():
    method = build_method(INSTDISC, host=tiny_host("instdisc", instdisc_plugin))
    head = monitored_network(method, build_knn(KnnConfig(features="head")))
    method.eval()
    with torch.no_grad():
        assert head(torch.randn(2, 3, 8, 8)).shape == (2, 6)


class NoHead(Method):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(2, 2)

    def forward(self, batch, step) -> MethodOutput:
        return MethodOutput(self.backbone(batch.views[0]).sum())


def test_a_method_without_a_head_output_is_a_one_line_error():
    with pytest.raises(SslcoreError, match='features = "head": method NoHead has no head output'):
        monitored_network(NoHead(), build_knn(KnnConfig(features="head")))
