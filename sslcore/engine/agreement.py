"""Errors that only some processes of a run meet, reported once: a corrupt data row read by one process, an
evaluation that runs on the main process alone.

A process that stopped alone would leave the others waiting in their next collective, which ends in a backend
error with a traceback. Instead every process goes on to a point where all of them call :func:`raise_first`, which
tells them whether any met an error; then the main process raises the first one (in process order) and the others
exit with code 2 without a message (:func:`sslcore.console.exit_after_process_zero`).
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from sslcore.console import exit_after_process_zero
from sslcore.errors import SslcoreError


def raise_first(accelerator: Accelerator, error: SslcoreError | None) -> None:
    """Return if no process met an error (``error`` is this process's, or None); else raise the first on the main
    process and exit with code 2 on the others. A collective: every process calls it at the same point."""
    if accelerator.num_processes == 1:
        if error is not None:
            raise error
        return
    met = accelerator.gather(torch.tensor([float(error is not None)], device=accelerator.device))
    if not bool(met.any()):
        return
    first = next(message for message in gather_object([error.message if error else None]) if message)
    if accelerator.is_main_process:
        raise error if error is not None else SslcoreError(first)
    exit_after_process_zero()
