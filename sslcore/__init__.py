"""sslcore: a plugin-based framework for self-supervised visual representation learning.

The public names below are imported on first use (PEP 562), so that ``import sslcore`` (every plugin does it for
``hookimpl``) and the ``sslcore`` command start without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from sslcore.lazy import lazy_exports

hookimpl = pluggy.HookimplMarker("sslcore")

#: Public name -> the module that defines it.
_LAZY = {
    "Batch": "sslcore.method",
    "KeyStore": "sslcore.components.key_stores.base",
    "Method": "sslcore.method",
    "MethodOutput": "sslcore.method",
    "MethodParts": "sslcore.method",
    "SslcoreError": "sslcore.errors",
    "StepInfo": "sslcore.method",
    "TargetUpdater": "sslcore.components.target_updaters",
    "load_backbone": "sslcore.export",
    "train_step": "sslcore.engine.step",
}

if TYPE_CHECKING:
    from sslcore.components.key_stores.base import KeyStore
    from sslcore.components.target_updaters import TargetUpdater
    from sslcore.engine.step import train_step
    from sslcore.errors import SslcoreError
    from sslcore.export import load_backbone
    from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


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
