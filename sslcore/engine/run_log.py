"""What a run writes besides checkpoints: metrics.jsonl and summary.json (the curves: :mod:`sslcore.engine.curves`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sslcore.console import out
from sslcore.errors import SslcoreError


def _atomic_write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


class MetricsLog:
    """Appends one JSON object per logged step to ``metrics.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, step: int) -> None:
        """Drop records newer than ``step`` (a resumed run re-logs the steps after its checkpoint)."""
        if not self.path.exists():
            return
        kept = [line for line, record in self._parsed() if record.get("step", 0) <= step]
        _atomic_write(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        return [record for _, record in self._parsed()] if self.path.exists() else []

    def _parsed(self) -> list[tuple[str, dict[str, Any]]]:
        """Each line with its record; a torn last line (the run was killed while writing it) is left out, noted."""
        lines = self.path.read_text().splitlines()
        last = max((number for number, line in enumerate(lines, 1) if line), default=0)
        parsed = []
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                parsed.append((line, json.loads(line)))
            except json.JSONDecodeError:
                if number < last:
                    raise SslcoreError(f"line {number} is not a JSON record", where=str(self.path),
                                       hint="remove that line, or set run.resume=never to start over") from None
                out.print(f"{self.path}: dropped a torn last line (the run was stopped while writing it)")
        return parsed


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    _atomic_write(path, json.dumps(summary, indent=2) + "\n")

