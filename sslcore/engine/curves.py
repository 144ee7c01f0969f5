"""``curves.png``: a run's loss, learning rate, throughput and every evaluation against step, from ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The panels: (title, the records' key or, for ``None``, every evaluation result ``*_top1``).
PANELS: tuple[tuple[str, str | None], ...] = (
    ("loss", "loss"),
    ("learning rate", "lr"),
    ("images / s", "images_per_second"),
    ("evaluation top-1 (%)", None),
)


def curve_series(records: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Each panel's lines as (step, value) points: ``{"loss": {"loss": [...]}, "evaluation top-1 (%)": {"knn_top1":
    [...]}, ...}``. An evaluation's first point is the one before training (step 0)."""
    series: dict[str, dict[str, list[tuple[int, float]]]] = {title: {} for title, _ in PANELS}
    for record in records:
        step = record.get("step")
        if step is None:
            continue
        for title, key in PANELS:
            keys = [key] if key is not None else [k for k in record if k.endswith("_top1")]
            for name in keys:
                if isinstance(record.get(name), (int, float)):
                    series[title].setdefault(name, []).append((step, float(record[name])))
    return series


def plot_curves(records: list[dict[str, Any]], path: Path) -> None:
    """Write the four panels of :func:`curve_series` as a PNG (a panel without data says so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    series = curve_series(records)
    for axis, (title, key) in zip(axes.flat, PANELS):
        lines = series[title]
        axis.set_title(title, fontsize=10)
        for name, points in lines.items():
            steps, values = zip(*points)
            axis.plot(steps, values, "o-" if key is None else "-", markersize=3, label=name)
        if not lines:
            axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes, color="grey")
        elif len(lines) > 1 or key is None:  # name the evaluations (knn_top1, linear_top1)
            axis.legend(fontsize=8)
    for axis in axes[1]:
        axis.set_xlabel("step")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
