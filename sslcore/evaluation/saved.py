"""``sslcore eval`` results kept in the run directory: one JSON record per evaluation in ``evaluations.jsonl``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sslcore.console import print_warning

EVALUATIONS_FILE = "evaluations.jsonl"


def save_evaluation(run_dir: Path, evaluator: dict[str, Any], results: dict[str, float]) -> Path | None:
    """Append ``{"time", "eval": the evaluator's table, "results"}`` to ``RUN_DIR/evaluations.jsonl``; a run directory
    that cannot be written gets a warning instead (the results were printed)."""
    path = run_dir / EVALUATIONS_FILE
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "eval": evaluator, "results": results}
    try:
        with path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as error:
        print_warning(f"{path}: results not saved ({error.strerror or error})")
        return None
    return path
