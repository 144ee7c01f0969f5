"""CIFAR-10 kNN after a short, equal budget: every method's CIFAR-10 recipe against its random initialisation.

    python -m benchmarks.cifar10_knn --markdown docs/cifar10-knn.md --json cifar10-knn.json
    python -m benchmarks.cifar10_knn --peer lightly --seeds 0,1 --methods "SimCLR,MoCo v2,BYOL"

Each method trains from its plugin's CIFAR-10 recipe (method, heads, views, optimizer and loss as written) with
the same budget: backbone, epochs, training images, global batch and seed are overridden for all alike, and
warm-up is shortened to a tenth of the budget. The kNN monitor (k, T) is the same for every row, and the
engine reports it twice in one run: on the backbone at initialisation and after training. A raw-pixel kNN
on the same images and protocol is the floor any useful representation must clear. With ``--peer lightly``,
each method that lightly offers is also trained as lightly's components assemble it, on the same data, views,
budget, seed and initial backbone, and scored by the same kNN (``benchmarks/lightly_peer.py``); ``--seeds``
repeats every run per seed, so a reader sees whether a difference is within seed noise; ``--eval-every`` adds a kNN
curve per run. ``--views batched --cache decoded`` make the same views faster (docs/views.md). Each run saves its
result beside its run directory, and a later command with the same budget reuses it instead of training again.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import tomllib
from dataclasses import MISSING, asdict, dataclass, fields, replace
from importlib import resources
from pathlib import Path

import attrs
import torch
from torch import nn

from sslcore.data.sources import ParquetSourceConfig, build_parquet
from sslcore.data.views import EvalViewsConfig
from sslcore.evaluation.knn import KnnConfig, KnnEvaluator
from sslcore.plugins import PluginHost

#: Table row -> (plugin package, CIFAR-10 recipe name).
METHODS = {
    "InstDisc": ("sslcore_plugin_instdisc", "instdisc_cifar10"),
    "InvaSpread": ("sslcore_plugin_invaspread", "invaspread_cifar10"),
    "MoCo v2": ("sslcore_plugin_moco", "moco_cifar10"),
    "MoCo v3": ("sslcore_plugin_mocov3", "mocov3_cifar10"),
    "SimCLR": ("sslcore_plugin_simclr", "simclr_cifar10"),
    "BYOL": ("sslcore_plugin_byol", "byol_cifar10"),
    "SimSiam": ("sslcore_plugin_simsiam", "simsiam_cifar10"),
    "SwAV": ("sslcore_plugin_swav", "swav_cifar10"),
    "DINO": ("sslcore_plugin_dino", "dino_cifar10"),
    "SupCon (uses labels)": ("sslcore_plugin_supcon", "supcon_cifar10"),
    "CMC": ("sslcore_plugin_cmc", "cmc_cifar10"),
    "CPC v2": ("sslcore_plugin_cpc", "cpc_cifar10"),
}


@dataclass(frozen=True)
class Budget:
    """What every method gets: the same backbone, data, steps and kNN protocol."""

    data_dir: str
    backbone: str = "resnet18"
    cifar_stem: bool = False
    epochs: int = 2
    train_limit: int = 10000
    test_limit: int = 10000
    batch_size: int = 128
    k: int = 200
    temperature: float = 0.07
    seed: int = 0
    num_workers: int = 2
    views_pipeline: str = "pil"
    cache: str = "none"
    eval_every: int = 0

    @property
    def steps_per_epoch(self) -> int:
        return self.train_limit // self.batch_size


def recipe_document(package: str, recipe: str) -> dict:
    return tomllib.loads((resources.files(package) / "recipes" / f"{recipe}.toml").read_text())


def backbone_tables(document: dict) -> list[str]:
    """The recipe's backbone tables: ``backbone``, or ``backbones.<name>`` for a method with several encoders."""
    return [f"backbones.{name}" for name in document.get("backbones", {})] or ["backbone"]


def views_offer_pipelines(document: dict) -> bool:
    """Whether the recipe's view transform can be made per batch (CPC v2's whole-image views are made per image)."""
    entry = PluginHost().registries["transform"].get(document["views"]["kind"])
    return "pipeline" in attrs.fields_dict(entry.config)


def budget_overrides(document: dict, budget: Budget, output_dir: Path) -> list[str]:
    """``table.key=value`` overrides that put a method's recipe on the shared budget (every encoder alike)."""
    data = Path(budget.data_dir).resolve()
    overrides = [
        f'run.output_dir="{output_dir}"', f"run.epochs={budget.epochs}", f"run.batch_size={budget.batch_size}",
        f"run.seed={budget.seed}", f"run.num_workers={budget.num_workers}", "run.progress=false",
        f"run.eval_every={budget.eval_every}", "run.checkpoint_every=0", 'run.mixed_precision="no"',
        'run.resume="never"',  # a finished run's result is reused whole (benchmark-result.json), never resumed
        'data.kind="parquet"', f'data.train="{data / "train.parquet"}"', f'data.test="{data / "test.parquet"}"',
        f"data.train_limit={budget.train_limit}", f"data.test_limit={budget.test_limit}",
        f"eval.k={budget.k}", f"eval.temperature={budget.temperature}", f"eval.num_workers={budget.num_workers}",
        f'data.cache="{budget.cache}"',  # in the default cache folder: one decoded copy for every run and seed
    ]
    if budget.views_pipeline != "pil" and views_offer_pipelines(document):
        overrides.append(f'views.pipeline="{budget.views_pipeline}"')
    for table in backbone_tables(document):
        overrides += [f'{table}.name="{budget.backbone}"', f"{table}.cifar_stem={str(budget.cifar_stem).lower()}"]
    if document.get("schedule", {}).get("warmup_epochs", 0) > 0:
        overrides.append(f"schedule.warmup_epochs={budget.epochs / 10}")
    method = document["method"]
    if "freeze_prototypes_niters" in method:  # SwAV: one epoch of the budget, as the recipe's one epoch
        overrides.append(f"method.freeze_prototypes_niters={budget.steps_per_epoch}")
    return overrides


def reusable(result: Path, budget: Budget) -> dict | None:
    """The summary saved at ``result`` by an earlier run of the same budget, or None."""
    if not result.is_file():
        return None
    saved = json.loads(result.read_text())
    defaults = {field.name: field.default for field in fields(Budget) if field.default is not MISSING}
    # a field the saved budget lacks was added later and had its default then
    return saved["summary"] if {**defaults, **saved.get("budget", {})} == asdict(budget) else None


def save(result: Path, budget: Budget, summary: dict) -> dict:
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps({"budget": asdict(budget), "summary": summary}, indent=2))
    return summary


def train_method(name: str, budget: Budget, runs_dir: Path) -> dict:
    """Train one method on the budget in a fresh process, or reuse its saved result of the same budget; its
    summary.json (kNN before and after) with the recipe, the command's time and the kNN curve."""
    package, recipe = METHODS[name]
    result = runs_dir / recipe / "benchmark-result.json"
    if (summary := reusable(result, budget)) is not None:
        return summary
    document = recipe_document(package, recipe)
    overrides = budget_overrides(document, budget, runs_dir)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sslcore.run", recipe, *overrides], capture_output=True, text=True,
                          env=dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1"))
    if done.returncode != 0:
        raise RuntimeError(f"{name} ({recipe}) failed:\n{done.stderr[-3000:]}")
    summary = json.loads((runs_dir / recipe / "summary.json").read_text())
    summary["recipe"], summary["command_seconds"] = recipe, time.perf_counter() - started
    summary["knn_curve"] = knn_curve(runs_dir / recipe / "metrics.jsonl")
    summary["zero_init_last"] = zero_init_last(document)
    return save(result, budget, summary)


def train_peer(name: str, budget: Budget, runs_dir: Path) -> dict | None:
    """lightly's implementation of row ``name`` on the same budget (or its saved result), or None where lightly has
    none."""
    from benchmarks.lightly_peer import LIGHTLY_METHODS, train_lightly

    if name not in LIGHTLY_METHODS:
        return None
    package, recipe = METHODS[name]
    result = runs_dir / recipe / "benchmark-result.json"
    if (summary := reusable(result, budget)) is not None:
        return summary
    overrides = budget_overrides(recipe_document(package, recipe), budget, runs_dir)
    started = time.perf_counter()
    summary = train_lightly(name, recipe, overrides, cifar_stem=budget.cifar_stem)
    summary["command_seconds"] = time.perf_counter() - started
    return save(result, budget, summary)


def knn_curve(metrics: Path) -> list[list[float]]:
    """``[step, kNN top-1]`` of every evaluation an engine run logged, its initialisation's at step 0."""
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [[record["step"], record["knn_top1"]] for record in records if "knn_top1" in record]


def zero_init_last(document: dict) -> bool:
    """Whether the recipe's ResNet starts with each block's last BatchNorm scale at 0 (timm's default) or at 1 (the
    first encoder's, for a method with several)."""
    first = next(iter(document.get("backbones", {}).values()), None) or document["backbone"]
    return first.get("zero_init_last", True) is not False


def raw_pixel_knn(budget: Budget) -> float:
    """kNN top-1 of the flattened, normalized 32x32 pixels on the same images and protocol."""
    data = Path(budget.data_dir)
    source = ParquetSourceConfig(train=str(data / "train.parquet"), test=str(data / "test.parquet"),
                                 train_limit=budget.train_limit, test_limit=budget.test_limit)
    evaluator = KnnEvaluator(KnnConfig(k=budget.k, temperature=budget.temperature, num_workers=budget.num_workers,
                                       transform=EvalViewsConfig(size=32)))
    results = evaluator.evaluate(nn.Flatten(), build_parquet(source, "train"), build_parquet(source, "test"), "cpu")
    return results["knn_top1"]


def markdown(budget: Budget, pixels: float, rows: dict[str, list[dict]], command: str, peer: bool = False) -> str:
    lines = [
        "# CIFAR-10 kNN after a short, equal budget",
        "",
        f"Measured with `{command}` on {os.cpu_count()} CPU cores, torch {torch.__version__}.",
        "",
        f"Budget for every method: {budget.backbone} ({'CIFAR' if budget.cifar_stem else 'ImageNet'} stem) at "
        f"32 px, {budget.epochs} epochs over the first {budget.train_limit} training images, global batch "
        f"{budget.batch_size}, the seeds of the seed column, warm-up a tenth of the budget, the "
        f"{budget.views_pipeline} view pipeline; everything else as in the "
        "method's CIFAR-10 recipe. kNN: weighted, k = "
        f"{budget.k}, T = {budget.temperature}, memory = the same {budget.train_limit} training images, queries = "
        f"the first {budget.test_limit} test images. \"Init\" is the same backbone at its random initialisation, "
        "evaluated in the same run before the first step.",
        "",
        "These are smoke-scale figures for comparing implementations under one budget, not the papers' numbers: "
        "the recipes train for hundreds of epochs with the CIFAR stem. Speed is measured by `benchmarks.throughput` "
        "(docs/benchmarks.md); the JSON output keeps each run's images/s and wall time.",
        "",
        "Reading the rows: \"init\" differs between rows because recipes whose official code starts every BatchNorm "
        "scale at 1 (torchvision's ResNet) say `zero_init_last = false`, and a random ResNet whose residual branches "
        "are active already scores higher in kNN; the others keep timm's zero-initialised last BatchNorm of each "
        "block. A budget of a few epochs also favours methods whose targets come from the current network: "
        "InstDisc's positives are memory-bank entries that start random and are refreshed once per epoch "
        "(momentum 0.5), so in its first epoch it fits random targets; SwAV's prototypes stay frozen for the first "
        "epoch (`freeze_prototypes_niters`).",
        "",
        *([
            "The lightly columns train the same method as lightly's components assemble it "
            "(`benchmarks/with_lightly.py`: its heads, losses, momentum updates, LARS / SGD and warm-up cosine "
            "schedule) on sslcore's loader (the same rows, views and order), from the same initial backbone (\"init\" "
            "is shared), scored by the same kNN; \"-\": lightly has no such method. Final losses are on each "
            "implementation's own scale: sslcore's SimCLR loss is the official code's `loss_a + loss_b`, twice "
            "lightly's `NTXentLoss`. Where lightly's examples differ from a recipe, the lightly column keeps lightly's "
            "way: its MoCo example has no shuffled BatchNorm (`moco_cifar10` shuffles in groups of 64, as the "
            "MoCo CIFAR-10 demo's split BatchNorm).",
            "",
        ] if peer else []),
        f"Raw pixels (flattened 32x32x3, same kNN): **{pixels:.2f}%**",
        "",
        "| method | recipe | seed | last BN scale at init | kNN top-1 init | kNN top-1 after | gain | final loss |"
        + (" lightly: kNN top-1 after | lightly: gain | lightly: final loss |" if peer else ""),
        "|---|---|---:|---|---:|---:|---:|---:|" + ("---:|---:|---:|" if peer else ""),
    ]
    for name, runs in rows.items():
        for run in runs:
            summary, other = run["sslcore"], run.get("lightly")
            line = (
                f"| {name} | `{summary['recipe']}` | {run['seed']} | {'0' if summary['zero_init_last'] else '1'} | "
                f"{summary['knn_top1_init']:.2f} | {summary['knn_top1']:.2f} | "
                f"{summary['knn_top1'] - summary['knn_top1_init']:+.2f} | {summary['final_loss']:.3f} |"
            )
            if peer:
                line += (f" {other['knn_top1']:.2f} | {other['knn_top1'] - other['knn_top1_init']:+.2f} | "
                         f"{other['final_loss']:.3f} |" if other else " - | - | - |")
            lines.append(line)
    if peer:
        lines += seed_summary(rows)
    return "\n".join(lines) + "\n"


def seed_summary(rows: dict[str, list[dict]]) -> list[str]:
    """Per method with a lightly column: both implementations' kNN after, as the mean and the range over seeds, and
    the difference of the means, so a reader can set it against the seed-to-seed spread."""
    lines = [
        "",
        "Over the seeds (kNN top-1 after; range: the largest minus the smallest seed):",
        "",
        "| method | seeds | sslcore: mean | sslcore: range | lightly: mean | lightly: range | sslcore - lightly |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in rows.items():
        if not all(run.get("lightly") for run in runs):
            continue
        ours = [run["sslcore"]["knn_top1"] for run in runs]
        theirs = [run["lightly"]["knn_top1"] for run in runs]
        mean_ours, mean_theirs = sum(ours) / len(ours), sum(theirs) / len(theirs)
        lines.append(f"| {name} (over seeds) | {len(runs)} | {mean_ours:.2f} | {max(ours) - min(ours):.2f} | "
                     f"{mean_theirs:.2f} | {max(theirs) - min(theirs):.2f} | {mean_ours - mean_theirs:+.2f} |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/cifar10", help="folder with train/test.parquet")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help='comma-separated rows (default: all; "" for the raw-pixel kNN alone)')
    parser.add_argument("--epochs", type=int, default=Budget.epochs)
    parser.add_argument("--train-limit", type=int, default=Budget.train_limit)
    parser.add_argument("--test-limit", type=int, default=Budget.test_limit)
    parser.add_argument("--batch-size", type=int, default=Budget.batch_size)
    parser.add_argument("--k", type=int, default=Budget.k, help="kNN neighbours")
    parser.add_argument("--temperature", type=float, default=Budget.temperature, help="kNN vote temperature")
    parser.add_argument("--cifar-stem", action="store_true", help="every backbone with the CIFAR stem")
    parser.add_argument("--views", choices=["pil", "batched"], default=Budget.views_pipeline,
                        help="the view pipeline of every run (both make the same views: docs/views.md)")
    parser.add_argument("--cache", choices=["none", "decoded"], default=Budget.cache,
                        help="decode the training rows once into a file shared by every run")
    parser.add_argument("--eval-every", type=int, default=Budget.eval_every,
                        help="also score kNN every this many steps (both implementations): a curve per run")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; every run is repeated per seed")
    parser.add_argument("--peer", choices=["lightly"], help="also train lightly's implementation of each method")
    parser.add_argument("--runs-dir", default="runs/cifar10_knn",
                        help="where each run writes; a run whose result there has the same budget is not repeated")
    parser.add_argument("--json", help="write the budget and every summary here")
    parser.add_argument("--markdown", help="write the table here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        sys.exit(f"error: unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if not (Path(args.data_dir) / "train.parquet").is_file():
        sys.exit(f"error: {args.data_dir} has no train.parquet; give --data-dir")
    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        sys.exit(f"error: --seeds takes comma-separated integers, got {args.seeds!r}")
    if args.peer == "lightly" and importlib.util.find_spec("lightly") is None:
        sys.exit("error: --peer lightly needs lightly: pip install '.[bench]'")
    budget = Budget(data_dir=args.data_dir, epochs=args.epochs, train_limit=args.train_limit,
                    test_limit=args.test_limit, batch_size=args.batch_size, k=args.k, temperature=args.temperature,
                    cifar_stem=args.cifar_stem, views_pipeline=args.views, cache=args.cache,
                    eval_every=args.eval_every)
    pixels = raw_pixel_knn(budget)
    print(f"raw pixels: kNN top-1 {pixels:.2f}%", flush=True)
    rows: dict[str, list[dict]] = {name: [] for name in methods}
    for seed in seeds:
        seeded, runs_dir = replace(budget, seed=seed), Path(args.runs_dir).resolve() / f"seed{seed}"
        for name in methods:
            run = {"seed": seed, "sslcore": train_method(name, seeded, runs_dir)}
            summary = run["sslcore"]
            print(f"{name} seed {seed}: kNN top-1 {summary['knn_top1_init']:.2f}% -> {summary['knn_top1']:.2f}% "
                  f"({summary['command_seconds'] / 60:.1f} min)", flush=True)
            if args.peer:
                run["lightly"] = train_peer(name, seeded, runs_dir / "lightly")
                if run["lightly"]:
                    other = run["lightly"]
                    print(f"{name} seed {seed}, lightly: kNN top-1 {other['knn_top1_init']:.2f}% -> "
                          f"{other['knn_top1']:.2f}% ({other['command_seconds'] / 60:.1f} min)", flush=True)
            rows[name].append(run)
    command = "python -m benchmarks.cifar10_knn " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        Path(args.json).write_text(json.dumps({"budget": asdict(budget), "seeds": seeds, "peer": args.peer,
                                               "raw_pixels_knn_top1": pixels, "methods": rows}, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown(budget, pixels, rows, command.strip(), peer=bool(args.peer)))


if __name__ == "__main__":
    main()
