"""Which network the engine's monitor evaluates: the backbone (what a run exports), or the head output.

``[eval] features = "head"`` (kNN) scores the L2-normalised output of the method's projection / embedding head,
as the official kNN monitors of InstDisc (zhirongw/lemniscate.pytorch ``test.py`` on ``net(inputs)``, the
normalised 128-d features), MoCo (the CIFAR demo's ``knn_predict`` on the normalised query) and InvaSpread do,
so a recipe's quoted monitor figure can be compared on the same features. The kNN normalises every feature.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sslcore.errors import SslcoreError
from sslcore.method import Method


def monitored_network(method: Method, evaluator: Any) -> nn.Module:
    """The network ``evaluator`` scores: ``method.head_network()`` when its ``features`` is ``"head"``, else the
    method's evaluation network (the backbone unless the method says otherwise)."""
    if getattr(evaluator, "features", "backbone") != "head":
        return method.evaluation_network()
    head = method.head_network()
    if head is None:
        raise SslcoreError(
            f"[eval] features = \"head\": method {type(method).__name__} has no head output to evaluate",
            hint='use features = "backbone"',
        )
    return head
