"""Public names of a package imported on first use (PEP 562), so that importing the package (a plugin's entry
point does) imports no torch: ``__getattr__, __dir__ = lazy_exports(__name__, {"Name": "package.module"})``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(module_name: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for module ``module_name``, whose names ``exports`` maps to the modules that
    define them; each is imported on its first use and then kept in the module."""
    module = sys.modules[module_name]

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(module), *exports})

    return __getattr__, __dir__
