"""Console output: rich on the main process, one-line errors."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import NoReturn

from rich.console import Console
from rich.text import Text

DEBUG_ENV = "SSLCORE_DEBUG"
#: How long a process other than process 0 waits for the launcher to stop it before it reports an error itself.
REPORT_WAIT_S = 60.0

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


def launched_rank() -> int:
    """This process's rank in a run started by ``torchrun`` or ``accelerate launch`` (which set ``RANK``), else 0."""
    return int(os.environ.get("RANK") or 0)


def exit_after_process_zero(message: str | None = None) -> NoReturn:
    """Exit with code 2 once process 0 has reported an error that every process met, so a run on several processes
    reports it once. The launcher stops the other processes (SIGTERM) as soon as one has ended, which process 0 does
    after reporting; ending first, this process could cut that report short. If no stop comes within
    :data:`REPORT_WAIT_S` (process 0 did not meet the error), print ``message`` and exit."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    time.sleep(REPORT_WAIT_S)
    if message:
        print_error(message)
    raise SystemExit(2)


def exit_on_user_error(error: BaseException) -> None:
    """Print ``error`` as one line and exit with code 2 (re-raise with a traceback under SSLCORE_DEBUG=1). In a run
    that a launcher started on several processes, process 0 prints it (:func:`exit_after_process_zero`)."""
    if debug_enabled():
        raise error
    if launched_rank() != 0:
        exit_after_process_zero(str(error))
    print_error(str(error))
    sys.exit(2)
