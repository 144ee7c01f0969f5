"""Reproduce lightly's published CIFAR-10 benchmark settings with sslcore's recipes, beside lightly's figures.

    python -m benchmarks.reproduce cifar10                      # every setting and method: days on one GPU
    python -m benchmarks.reproduce cifar10 --settings 200x512 --methods SimCLR,BYOL
    python -m benchmarks.reproduce cifar10 --quick              # end to end on a tiny budget (CPU, a minute)

lightly's table (docs/source/getting_started/benchmarks.rst, "CIFAR-10 benchmark results", lightly-ai/lightly at
948454fe, 2026-08-13; https://docs.lightly.ai/getting_started/benchmarks.html): a ResNet-18 with the CIFAR stem,
200 epochs at batch 128 and 512, 800 epochs at batch 512, kNN with k = 200 (``knn_t = 0.1`` in its
``cifar10_benchmark.py``) on the 50,000 training images as memory and the 10,000 test images as queries, the
best accuracy over its per-epoch evaluations. Here each method trains from its own plugin's CIFAR-10 recipe (the
papers' or official code's optimizer, heads, views and loss) with lightly's epochs, batch, backbone and kNN; the
monitor runs every ``--eval-every-epochs`` epochs, and the table reports its best and its last value.

Resumable: one method at a time, each in its own process and run directory (``RUNS/<setting>/<recipe>``);
checkpoints every evaluation and ``run.resume = auto`` continue an interrupted run, a finished one (its
``summary.json``) is skipped, and the table is rewritten after every run with what was measured so far.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cifar10_knn import METHODS, backbone_tables, recipe_document

CIFAR10_TRAIN_IMAGES = 50000
LIGHTLY_SOURCE = ("lightly docs/source/getting_started/benchmarks.rst, CIFAR-10 table (lightly-ai/lightly 948454fe, "
                  "https://docs.lightly.ai/getting_started/benchmarks.html)")

#: lightly's kNN top-1 (%) by sslcore table row and (epochs, batch). lightly's "Moco" is MoCo v2-style (symmetric
#: loss, a 4096-key memory bank; 8192 at batch 512); its other rows without an sslcore plugin (BarlowTwins, DCL,
#: DCLW, FastSiam, NNCLR, SMoG) are left out.
LIGHTLY_CIFAR10: dict[str, dict[tuple[int, int], float]] = {
    "BYOL": {(200, 128): 86.9, (200, 512): 86.8, (800, 512): 91.0},
    "DINO": {(200, 128): 84.0, (200, 512): 81.3, (800, 512): 84.8},
    "MoCo v2": {(200, 128): 83.8, (200, 512): 84.7, (800, 512): 89.9},
    "SimCLR": {(200, 128): 84.7, (200, 512): 84.8, (800, 512): 87.9},
    "SimSiam": {(200, 128): 81.9, (200, 512): 76.4, (800, 512): 90.4},
    "SwAV": {(200, 128): 81.2, (200, 512): 84.2, (800, 512): 88.4},
}


@dataclass(frozen=True)
class Setting:
    """One column group of lightly's table, and how much of CIFAR-10 a run sees (all of it but with ``--quick``)."""

    epochs: int
    batch_size: int
    train_limit: int = CIFAR10_TRAIN_IMAGES
    test_limit: int = 10000
    cifar_stem: bool = True
    eval_every_epochs: int = 10

    @property
    def name(self) -> str:
        return f"{self.epochs}x{self.batch_size}"

    @property
    def steps_per_epoch(self) -> int:
        return self.train_limit // self.batch_size


SETTINGS = {s.name: s for s in (Setting(200, 128), Setting(200, 512), Setting(800, 512))}
QUICK = Setting(epochs=1, batch_size=16, train_limit=64, test_limit=32, cifar_stem=False, eval_every_epochs=1)


def overrides(document: dict, setting: Setting, data_dir: Path, runs_dir: Path) -> list[str]:
    """``table.key=value`` overrides that put a method's CIFAR-10 recipe on one of lightly's settings."""
    every = setting.steps_per_epoch * setting.eval_every_epochs
    result = [
        f'run.output_dir="{runs_dir / setting.name}"', f"run.epochs={setting.epochs}",
        f"run.batch_size={setting.batch_size}", f"run.eval_every={every}", f"run.checkpoint_every={every}",
        'run.resume="auto"', "run.progress=false",
        'data.kind="parquet"', f'data.train="{data_dir / "train.parquet"}"', f'data.test="{data_dir / "test.parquet"}"',
        f"data.train_limit={setting.train_limit}", f"data.test_limit={setting.test_limit}",
        "eval.k=200", "eval.temperature=0.1",  # lightly cifar10_benchmark.py: knn_k = 200, knn_t = 0.1
    ]
    for table in backbone_tables(document):
        result += [f'{table}.name="resnet18"', f"{table}.cifar_stem={str(setting.cifar_stem).lower()}"]
    method, run = document["method"], document["run"]
    if "freeze_prototypes_niters" in method:  # SwAV: the same number of epochs with frozen prototypes
        frozen = method["freeze_prototypes_niters"] * run["batch_size"] / setting.batch_size
        result.append(f"method.freeze_prototypes_niters={max(round(frozen), 1)}")
    if setting.epochs < document.get("schedule", {}).get("warmup_epochs", 0):
        result.append(f"schedule.warmup_epochs={setting.epochs / 10}")
    return result


def run_dir(recipe: str, setting: Setting, runs_dir: Path) -> Path:
    return runs_dir / setting.name / recipe


def train(name: str, setting: Setting, data_dir: Path, runs_dir: Path) -> dict:
    """Train (or resume, or skip when finished) one method on one setting; its best and last kNN top-1."""
    package, recipe = METHODS[name]
    directory = run_dir(recipe, setting, runs_dir)
    if not (directory / "summary.json").is_file():
        command = [sys.executable, "-m", "sslcore.run", recipe,
                   *overrides(recipe_document(package, recipe), setting, data_dir, runs_dir)]
        done = subprocess.run(command, env=dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1"), check=False)
        if done.returncode != 0:
            raise SystemExit(f"error: {name} ({recipe}, {setting.name}) stopped with exit code {done.returncode}; "
                             f"run the same command again to resume from {directory}")
    return measured(directory)


def measured(directory: Path) -> dict:
    """The kNN top-1 of a finished run: the last, and the best of every evaluation after initialisation."""
    summary = json.loads((directory / "summary.json").read_text())
    records = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines() if line]
    during = [r["knn_top1"] for r in records if "knn_top1" in r and r.get("step", 0) > 0]
    return {"last": summary["knn_top1"], "best": max([*during, summary["knn_top1"]]),
            "hours": summary["wall_seconds"] / 3600, "processes": summary["processes"]}


def table(rows: dict[str, dict[str, dict]], settings: list[Setting], command: str) -> str:
    """Markdown: for every setting, lightly's figure beside sslcore's best and last; "-" where not measured."""
    lines = [
        "# CIFAR-10: sslcore's recipes on lightly's benchmark settings",
        "",
        (f"Command: `{command}`. lightly's figures: {LIGHTLY_SOURCE}. kNN top-1 (%), k = 200, T = 0.1, "
         "ResNet-18; lightly reports the best of its per-epoch evaluations, sslcore the best of its evaluations "
         "(\"best\") and the final one (\"last\"). A figure appears only where it was measured."),
        "",
        ("| method | " + " | ".join(f"{s.epochs} ep, batch {s.batch_size}: lightly / best / last" for s in settings)
         + " |"),
        "|---|" + "---:|" * len(settings),
    ]
    for name, measured_runs in rows.items():
        cells = []
        for s in settings:
            lightly = LIGHTLY_CIFAR10[name].get((s.epochs, s.batch_size))
            mine = measured_runs.get(s.name)
            cells.append(" / ".join([f"{lightly:.1f}" if lightly is not None else "-",
                                     *([f"{mine['best']:.1f}", f"{mine['last']:.1f}"] if mine else ["-", "-"])]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", choices=["cifar10"])
    parser.add_argument("--methods", default=",".join(LIGHTLY_CIFAR10), help="comma-separated table rows")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated EPOCHSxBATCH")
    parser.add_argument("--quick", action="store_true", help="one epoch over 64 images: checks the command only")
    parser.add_argument("--data-dir", default="../shared/data/cifar10", help="folder with train/test.parquet")
    parser.add_argument("--runs-dir", default="runs/reproduce")
    parser.add_argument("--markdown", default=None, help="write the table here (default: RUNS_DIR/cifar10.md)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(LIGHTLY_CIFAR10))
    names = sorted(set(args.settings.split(",")) - set(SETTINGS))
    if unknown or names:
        sys.exit(f"error: unknown {'methods ' + str(unknown) if unknown else 'settings ' + str(names)}; choose "
                 f"from {', '.join(LIGHTLY_CIFAR10) if unknown else ', '.join(SETTINGS)}")
    data_dir = Path(args.data_dir).resolve()
    if not (data_dir / "train.parquet").is_file():
        sys.exit(f"error: {args.data_dir} has no train.parquet; give --data-dir")
    settings = [QUICK] if args.quick else [SETTINGS[n] for n in args.settings.split(",")]
    runs_dir = Path(args.runs_dir).resolve()
    markdown = Path(args.markdown) if args.markdown else runs_dir / "cifar10.md"
    markdown.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.reproduce " + " ".join(argv if argv is not None else sys.argv[1:])
    rows: dict[str, dict[str, dict]] = {name: {} for name in methods}
    for setting in settings:
        for name in methods:
            rows[name][setting.name] = result = train(name, setting, data_dir, runs_dir)
            print(f"{name} {setting.name}: kNN top-1 best {result['best']:.2f}%, last {result['last']:.2f}%",
                  flush=True)
            markdown.write_text(table(rows, settings, command.strip()))
    print(f"table: {markdown}")


if __name__ == "__main__":
    main()
