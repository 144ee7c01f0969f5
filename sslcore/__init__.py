"""sslcore: a plugin-based framework for self-supervised visual representation learning."""

import pluggy

hookimpl = pluggy.HookimplMarker("sslcore")

from sslcore.components.key_stores.base import KeyStore  # noqa: E402
from sslcore.components.target_updaters import TargetUpdater  # noqa: E402
from sslcore.errors import SslcoreError  # noqa: E402
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo  # noqa: E402
from sslcore.engine.step import train_step  # noqa: E402
from sslcore.export import load_backbone  # noqa: E402

__all__ = [
    "Batch",
    "KeyStore",
    "Method",
    "MethodOutput",
    "MethodParts",
    "SslcoreError",
    "StepInfo",
    "TargetUpdater",
    "hookimpl",
    "load_backbone",
    "train_step",
]
