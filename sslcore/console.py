"""Console output: rich on the main process, one-line errors."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.text import Text

DEBUG_ENV = "SSLCORE_DEBUG"

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def print_error(message: str) -> None:
    """Print a user-facing error as one line on stderr."""
    err.print(Text.assemble(("error: ", "bold red"), message.replace("\n", " ")))


def print_warning(message: str) -> None:
    """Print a warning as one line on stderr (any process, data workers included)."""
    err.print(Text.assemble(("warning: ", "bold yellow"), message.replace("\n", " ")))


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def exit_on_user_error(error: BaseException) -> None:
    """Print ``error`` as one line and exit with code 2 (re-raise with a traceback under SSLCORE_DEBUG=1)."""
    if debug_enabled():
        raise error
    print_error(str(error))
    sys.exit(2)
