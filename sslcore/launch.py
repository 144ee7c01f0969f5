"""``sslcore launch [ACCELERATE OPTIONS] RECIPE [table.key=value ...]``: ``accelerate launch -m sslcore.run`` whose
user errors end as on one process: one line, exit code 2, no launcher traceback.

``accelerate launch`` (torch's elastic agent for several processes) reports any process that fails with its own
``ChildFailedError`` traceback and exits with code 1, whatever the process's exit code; sslcore cannot change that
from inside the processes. This command checks the recipe before any process starts, runs Accelerate's launcher in
this process, and when every process ended with the same sslcore exit code (2: a user error, already printed once
by process 0; 130 / 143: stopped by a signal after saving a checkpoint) it exits with that code and prints nothing
more. Any other failure keeps the launcher's report.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sslcore.errors import SslcoreError
from sslcore.plugins import PluginHost
from sslcore.recipe import resolve

#: Exit codes of ``sslcore.run`` that it reports itself: a user error, SIGINT and SIGTERM after a checkpoint.
REPORTED_EXIT_CODES = (2, 130, 143)
_AGENT_LOGGER = "torch.distributed.elastic"


def launch(argv: Sequence[str], host: PluginHost) -> None:
    """Check the recipe in ``argv`` (Accelerate's options, then the recipe and its overrides), then train it under
    Accelerate's launcher; exit with the processes' own code when they reported their failure."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    parser = launch_command_parser()
    parser.prog = "sslcore launch"
    args = parser.parse_args(argv)
    if args.module or args.no_python:
        raise SslcoreError("sslcore launch runs sslcore.run itself; give the recipe, not -m / --no_python",
                           hint="sslcore launch [accelerate options] RECIPE [table.key=value ...]")
    recipe, overrides = args.training_script, list(args.training_script_args)
    resolve(recipe, host, overrides)  # a recipe mistake is one line before any process starts
    args.training_script, args.training_script_args, args.module = "sslcore.run", [recipe, *overrides], True
    if args.cpu and (args.num_processes or 1) > 1:  # accelerate's --cpu starts one process; gloo needs --multi_gpu
        args.cpu, args.multi_gpu = False, True
        os.environ["ACCELERATE_USE_CPU"] = "1"
    with _quiet_agent():
        try:
            launch_command(args)
        except subprocess.CalledProcessError as failed:  # one process (accelerate's simple launcher)
            _exit_if_reported([failed.returncode], failed)
        except ChildFailedError as failed:  # several processes (torch's elastic agent)
            _exit_if_reported([f.exitcode for f in failed.failures.values()], failed)


def _exit_if_reported(codes: list[int], failure: Exception) -> None:
    """Exit with the processes' code if they all ended with one sslcore reports itself; else re-raise ``failure``."""
    if codes and len(set(codes)) == 1 and codes[0] in REPORTED_EXIT_CODES:
        sys.exit(codes[0])
    raise failure


@contextmanager
def _quiet_agent() -> Iterator[None]:
    """Hold back the elastic agent's log lines (``failed (exitcode: 2) local_rank: 0 ...``, ``Sending process ...
    closing signal``) while the processes run: what they say is in the launcher's report when it is shown."""
    import torch.distributed.run  # noqa: F401  (creates the agent's loggers)

    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith(_AGENT_LOGGER)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
