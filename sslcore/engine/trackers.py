"""Experiment trackers (``run.trackers``) through Accelerate's: TensorBoard, Weights & Biases and trackio.

- A recipe names only trackers sslcore supports, each installed (``pip install "sslcore[tensorboard]"``); both are
  checked when the recipe resolves, so ``sslcore check`` reports them and a run fails before it starts.
- The recipe is logged flattened: ``{"optimizer.base_lr": 0.3, "optimizer.betas": "[0.9, 0.999]"}`` (scalars as
  they are, arrays and tables as their JSON text, absent values left out), which TensorBoard's hparams accept.
- A resumed run continues the same tracker run: the run directory keeps, in ``trackers.json``, the W&B run id and
  the trackio run name that the first start chose; TensorBoard purges the events past the resumed step.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
from pathlib import Path
from typing import Any

from sslcore.errors import did_you_mean

#: Supported trackers: the module each needs, installed by the extra of the same name.
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}
#: Where the run directory keeps the tracker runs' identities (deleted by ``run.resume = "never"``).
IDS_FILE = "trackers.json"
#: TensorBoard's event files, under the run directory.
TENSORBOARD_DIR = "tensorboard"


def check_trackers(_instance: Any, _attribute: Any, names: tuple[str, ...]) -> None:
    """attrs validator of ``run.trackers``: each name supported and its package installed."""
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"'trackers' has an unknown tracker {name!r}; {did_you_mean(name, TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ValueError(
                f"'trackers' names {name!r}, whose package is not installed; "
                f'install it with `pip install "sslcore[{name}]"` or remove it from run.trackers'
            )


def flatten(document: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A nested recipe document as dotted keys and scalar values (arrays as JSON text; None left out)."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{path}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[path] = value
        elif value is not None:
            flat[path] = json.dumps(value)
    return flat


def accelerator_options(trackers: tuple[str, ...], run_dir: Path) -> dict[str, Any]:
    """The ``Accelerator`` arguments for ``trackers``: TensorBoard writes under ``RUN_DIR/tensorboard``."""
    from accelerate.utils import ProjectConfiguration

    return {
        "log_with": list(trackers) or None,
        "project_config": ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / TENSORBOARD_DIR)),
    }


def start(accelerator: Any, name: str, document: dict[str, Any], run_dir: Path, step: int) -> None:
    """Start the trackers (main process) at ``step`` (0 for a new run): the same W&B / trackio run as before when
    the run directory has one, the recipe logged flattened."""
    trackers = [str(tracker) for tracker in accelerator.log_with]
    if not trackers:
        return
    ids = _saved_ids(run_dir) if step > 0 else {}
    if accelerator.is_main_process and "wandb" in trackers:
        ids.setdefault("wandb", secrets.token_hex(4))
    if accelerator.is_main_process and "trackio" in trackers:
        ids.setdefault("trackio", f"{name}-{secrets.token_hex(3)}")
    if accelerator.is_main_process and ids:
        (run_dir / IDS_FILE).write_text(json.dumps(ids, indent=2) + "\n")
    options = {
        # purge_step: TensorBoard drops the events a crashed run logged after the step it resumes from
        "tensorboard": {"purge_step": step + 1 if step else 0},
        "wandb": {"id": ids.get("wandb"), "resume": "allow", "name": name, "dir": str(run_dir)},
        "trackio": {"name": ids.get("trackio"), "resume": "allow"},
    }
    accelerator.init_trackers(name, config=flatten(document), init_kwargs=options)


def _saved_ids(run_dir: Path) -> dict[str, str]:
    path = run_dir / IDS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
