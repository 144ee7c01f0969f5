"""CLAE-SimCLR against plain SimCLR on the shared CIFAR-10 budget: kNN, and a linear probe's clean accuracy and its
accuracy under a small PGD attack.

    nice -n 10 python -m benchmarks.adversarial_cifar10 --json adversarial.json --markdown adversarial.md

Both rows train from sslcore-plugin-clae's ``clae_simclr_cifar10`` recipe on the budget of
:mod:`benchmarks.cifar10_knn` (same backbone, epochs, images, batch, seed and kNN protocol); the plain row drops the
recipe's ``[attack]`` and ``backbone.dual_bn`` (the official CLAE baseline is the same code without ``--adv``). Each
exported backbone then gets a linear probe (``sslcore.evaluation.linear_probe``) on frozen features of the training
images, scored on clean test images and on test images attacked by PGD through backbone and probe (the core's
``pgd`` attack on the probe's cross-entropy, in pixel space).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.cifar10_knn import Budget, budget_overrides, recipe_document
from sslcore.components.attacks import Attack, PGDConfig
from sslcore.data.sources import ParquetSourceConfig, build_parquet
from sslcore.data.views import EvalViewsConfig, build_eval
from sslcore.evaluation.features import labelled_features, topk_accuracy
from sslcore.evaluation.linear_probe import train_linear_probe
from sslcore.export import load_backbone
from sslcore.tomlwrite import dumps

RECIPE = ("sslcore_plugin_clae", "clae_simclr_cifar10")
ROWS = {"SimCLR": "simclr_plain", "CLAE (SimCLR)": "clae_simclr"}


def recipe_file(row: str, runs_dir: Path) -> Path:
    """The CLAE recipe as written, or without its attack and auxiliary BatchNorm for the plain row."""
    document = recipe_document(*RECIPE)
    document["run"]["name"] = ROWS[row]
    if row == "SimCLR":
        del document["attack"]
        document["backbone"] = {k: v for k, v in document["backbone"].items() if not k.startswith("dual_bn")}
    path = runs_dir / f"{ROWS[row]}.toml"
    path.write_text(dumps(document))
    return path


def train(row: str, budget: Budget, runs_dir: Path) -> dict:
    path = recipe_file(row, runs_dir)
    overrides = budget_overrides(recipe_document(*RECIPE), budget, runs_dir)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sslcore.run", str(path), *overrides],
        check=False,
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1"),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{row} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((runs_dir / ROWS[row] / "summary.json").read_text())
    summary["command_seconds"] = time.perf_counter() - started
    return summary


def probe_and_attack(run_dir: Path, budget: Budget, args: argparse.Namespace) -> dict[str, float]:
    """A linear probe on the exported backbone: clean test accuracy and accuracy under PGD (``--attack-limit``)."""
    backbone = load_backbone(run_dir / "backbone.safetensors")
    data = Path(budget.data_dir)
    source = ParquetSourceConfig(
        train=str(data / "train.parquet"),
        test=str(data / "test.parquet"),
        train_limit=budget.train_limit,
        test_limit=budget.test_limit,
    )
    train_set, test_set = build_parquet(source, "train"), build_parquet(source, "test")
    views = recipe_document(*RECIPE)["views"]
    transform = build_eval(EvalViewsConfig(size=32, mean=tuple(views["mean"]), std=tuple(views["std"])))
    features = labelled_features(
        backbone,
        train_set,
        test_set,
        transform,
        evaluator="linear",
        limit_train=None,
        limit_eval=None,
        batch_size=256,
        num_workers=budget.num_workers,
        device="cpu",
    )
    probe = train_linear_probe(
        features.train_features,
        features.train_labels,
        features.num_classes,
        epochs=50,
        lr=0.1,
        weight_decay=0.0,
        batch_size=256,
        seed=budget.seed,
    )
    with torch.no_grad():
        clean = topk_accuracy(probe(features.test_features), features.test_labels, (1,))[1]
    attack = Attack(
        PGDConfig(epsilon=args.epsilon, steps=args.steps, step_size=args.step_size, into_view=0),
        mean=views["mean"],
        std=views["std"],
    )
    network = torch.nn.Sequential(backbone, probe).eval()
    torch.manual_seed(budget.seed)
    correct = 0
    for start in range(0, args.attack_limit, 200):
        rows = test_set.select(range(start, min(start + 200, args.attack_limit)))
        images = torch.stack([transform(row["image"])[0] for row in rows])
        labels = torch.tensor(rows["label"])
        adversarial = attack.perturb(images, lambda x, y=labels: F.cross_entropy(network(x), y))
        with torch.no_grad():
            correct += (network(adversarial).argmax(dim=1) == labels).sum().item()
    return {"linear_top1": clean, "linear_top1_pgd": 100.0 * correct / args.attack_limit}


def markdown(budget: Budget, rows: dict[str, dict], args: argparse.Namespace, command: str) -> str:
    attack = (
        f"PGD, L-inf epsilon {args.epsilon * 255:.0f}/255, {args.steps} steps of {args.step_size * 255:.2f}/255, "
        f"random start, on the first {args.attack_limit} test images"
    )
    summary = (
        f"Budget: {budget.backbone} (cifar_stem={budget.cifar_stem}), {budget.epochs} epochs of "
        f"{budget.train_limit} CIFAR-10 images, batch {budget.batch_size}, seed {budget.seed}; kNN k={budget.k}, "
        f"T={budget.temperature} on {budget.test_limit} test images; linear probe 50 epochs on frozen features. "
        f"Attack: {attack}."
    )
    lines = [
        summary,
        "",
        "| method | kNN top-1 (init -> trained) | linear top-1 | linear top-1 under PGD | train minutes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, s in rows.items():
        lines.append(
            f"| {name} | {s['knn_top1_init']:.2f} -> {s['knn_top1']:.2f} | {s['linear_top1']:.2f} | "
            f"{s['linear_top1_pgd']:.2f} | {s['command_seconds'] / 60:.1f} |"
        )
    return "\n".join(lines) + f"\n\nCommand: `{command}`\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/cifar10", help="folder with train/test.parquet")
    parser.add_argument("--epochs", type=int, default=Budget.epochs)
    parser.add_argument("--train-limit", type=int, default=Budget.train_limit)
    parser.add_argument("--test-limit", type=int, default=Budget.test_limit)
    parser.add_argument("--epsilon", type=float, default=1 / 255, help="PGD budget in pixel units")
    parser.add_argument("--steps", type=int, default=5, help="PGD steps")
    parser.add_argument("--step-size", type=float, default=0.25 / 255, help="PGD step size in pixel units")
    parser.add_argument("--attack-limit", type=int, default=1000, help="test images attacked")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows (default: both)")
    parser.add_argument("--runs-dir", default="runs/adversarial_cifar10")
    parser.add_argument("--json", help="write the budget and both rows here")
    parser.add_argument("--markdown", help="write the table here")
    args = parser.parse_args(argv)
    if not (Path(args.data_dir) / "train.parquet").is_file():
        sys.exit(f"error: {args.data_dir} has no train.parquet; give --data-dir")
    budget = Budget(
        data_dir=args.data_dir, epochs=args.epochs, train_limit=args.train_limit, test_limit=args.test_limit
    )
    runs_dir = Path(args.runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    chosen = [name.strip() for name in args.rows.split(",") if name.strip()]
    if set(chosen) - set(ROWS):
        sys.exit(f"error: unknown rows {sorted(set(chosen) - set(ROWS))}; choose from {', '.join(ROWS)}")
    for name, run_name in ROWS.items():
        if name not in chosen:
            continue
        rows[name] = train(name, budget, runs_dir)
        rows[name].update(probe_and_attack(runs_dir / run_name, budget, args))
        s = rows[name]
        print(
            f"{name}: kNN {s['knn_top1_init']:.2f} -> {s['knn_top1']:.2f}, linear {s['linear_top1']:.2f}, "
            f"under PGD {s['linear_top1_pgd']:.2f} ({s['command_seconds'] / 60:.1f} min)",
            flush=True,
        )
    command = "python -m benchmarks.adversarial_cifar10 " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        Path(args.json).write_text(json.dumps({"budget": vars(args), "rows": rows}, indent=2, default=str))
    if args.markdown:
        Path(args.markdown).write_text(markdown(budget, rows, args, command.strip()))


if __name__ == "__main__":
    main()
