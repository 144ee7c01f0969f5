"""JEM and HDGE against a plain classifier of the same budget on CIFAR-10: accuracy, calibration, OOD detection.

    nice -n 10 python -m benchmarks.hybrid_cifar10 --markdown hybrid.md --json hybrid.json

Each row trains from a recipe of sslcore-plugin-jem (``jem_cifar10``, ``hdge_cifar10``) with the same network,
steps, batch, seed and evaluator; the plain classifier is ``jem_cifar10`` with ``method.p_x_weight=0`` (JEM's
``--p_x_weight 0``), i.e. the cross-entropy alone; the warm-up is shortened to a tenth of the budget. Reported by the ``hybrid`` evaluator on the first ``eval_limit``
test images (and as many training images for the train accuracy): accuracy and ECE (15 bins), in percent, and the AUROC of telling them from CIFAR-10 interpolations,
uniform-noise and constant images with the scores log p(x) (``px``) and max p(y | x) (``py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

#: Table row -> (recipe, extra overrides).
ROWS = {
    "JEM": ("jem_cifar10", []),
    "classifier (CE only)": ("jem_cifar10", ["method.p_x_weight=0"]),
    "HDGE": ("hdge_cifar10", []),
}
COLUMNS = [
    "accuracy",
    "ece",
    "auroc_interp_px",
    "auroc_interp_py",
    "auroc_uniform_px",
    "auroc_uniform_py",
    "auroc_constant_px",
    "auroc_constant_py",
    "wall_seconds",
]


def train(recipe: str, overrides: list[str], args: argparse.Namespace, name: str) -> dict:
    """Run ``recipe`` in a fresh process and return its summary."""
    data = Path(args.data_dir)
    command = [
        sys.executable,
        "-m",
        "sslcore.run",
        recipe,
        *overrides,
        f"run.name={name}",
        f"run.output_dir={args.output_dir}",
        "run.resume=never",
        f"run.steps={args.steps}",
        f"run.batch_size={args.batch_size}",
        f"run.seed={args.seed}",
        f"data.train={data / 'train.parquet'}",
        f"data.test={data / 'test.parquet'}",
        f"eval.limit_eval={args.eval_limit}",
        f"eval.limit_train={args.eval_limit}",
        f"schedule.warmup_epochs={args.steps / 10 / (50000 // args.batch_size):.6f}",  # a tenth of the budget
    ]
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    subprocess.run(command, env=env, check=True)
    return json.loads((Path(args.output_dir) / name / "summary.json").read_text())


def markdown(results: dict[str, dict], args: argparse.Namespace) -> str:
    header = "| method | " + " | ".join(COLUMNS) + " |\n|" + " --- |" * (len(COLUMNS) + 1) + "\n"
    lines = [
        f"| {row} | "
        + " | ".join(f"{summary[c]:.3f}" if c.startswith("auroc") else f"{summary[c]:.1f}" for c in COLUMNS)
        + " |"
        for row, summary in results.items()
    ]
    budget = (
        f"{args.steps} steps of batch {args.batch_size} (seed {args.seed}), {args.eval_limit} test images, "
        f"{os.cpu_count()} CPU cores"
    )
    return f"Budget: {budget}.\n\n" + header + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"))
    parser.add_argument("--output-dir", default="runs/hybrid_cifar10")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-limit", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    results = {}
    for index, (row, (recipe, overrides)) in enumerate(ROWS.items()):
        started = time.perf_counter()
        results[row] = train(recipe, overrides, args, f"row{index}_{recipe}")
        print(f"{row}: done in {time.perf_counter() - started:.0f} s", flush=True)
    table = markdown(results, args)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
