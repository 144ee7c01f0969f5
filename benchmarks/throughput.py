"""Training-step speed of sslcore against a hand-written PyTorch loop and against lightly, plus scaling curves.

    python -m benchmarks.throughput --json out.json --markdown docs/benchmarks.md --plot docs/benchmarks.png

Sections (``--sections``): ``steps`` (each method's steady-state training step, the three implementations
interleaved), ``pipeline`` (loading + augmentation throughput on ../shared/data/cifar10), ``end_to_end`` (images
per second from the Parquet file to the optimizer step: sslcore's PIL views, decoded cache and batched views against
lightly's example pipeline, :mod:`benchmarks.end_to_end`) and ``scaling`` (MoCo v2 step time against queue size and
batch size, the queue's own cost, memory-bank update and sampling against bank size). ``--quick`` shrinks
everything for a smoke test. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import datasets
import torch

from benchmarks import end_to_end, handwritten, pipeline, report, scaling
from benchmarks.common import (
    BenchConfig,
    Timing,
    fixed_views,
    interleaved,
    load_average,
    machine_info,
    median,
    paired_ratio,
    worst_spread,
)
from benchmarks.methods import METHODS, benchmark_recipe
from benchmarks.sslcore_step import SslcoreStep
from sslcore.errors import SslcoreError
from sslcore.plugins import PluginHost

SECTIONS = ("steps", "pipeline", "end_to_end", "scaling")
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar10"
#: (full run, --quick) defaults of the options whose value depends on --quick.
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "image_size": (32, 16),
    "batch_size": (64, 8),
    "steps": (2, 1),
    "warmup": (2, 1),
    "repeats": (5, 1),
    "queue_sizes": ([1024, 4096, 16384, 65536], [256, 1024]),
    "batch_sizes": ([32, 64, 128], [8, 16]),
    "bank_sizes": ([10_000, 100_000, 1_281_167], [1_000, 10_000]),
    "workers": (2, 0),
    "pipeline_batches": (10, 2),
    "e2e_steps": (20, 2),
    "e2e_limit": (None, 48),
    "threads": (None, 1),
}
#: Relative tolerance of the check that sslcore and the hand-written loop start from the same first loss.
LOSS_TOLERANCE = {False: 1e-3, True: 5e-2}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                        help=f"methods to time (default: {' '.join(METHODS)})")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS, metavar="SECTION",
                        help=f"what to measure (default: {' '.join(SECTIONS)})")
    parser.add_argument("--backbone", default="resnet18", help="timm model name (default: resnet18)")
    parser.add_argument("--image-size", type=int, help="side of the square input images (default: 32; --quick: 16)")
    parser.add_argument("--cifar-stem", action="store_true",
                        help="3x3 stride-1 stem without max-pool, as the CIFAR recipes (16x the work at 32 px)")
    parser.add_argument("--batch-size", type=int, help="images per step (default: 64; --quick: 8)")
    parser.add_argument("--steps", type=int, help="timed steps per repeat (default: 2; --quick: 1)")
    parser.add_argument("--warmup", type=int, help="untimed steps before timing (default: 2; --quick: 1)")
    parser.add_argument("--repeats", type=int, help="interleaved repeats; the median is reported (default: 5)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in all implementations")
    parser.add_argument("--channels-last", action="store_true", help="channels-last networks and inputs")
    parser.add_argument("--threads", type=int,
                        help="torch intra-op threads (default: torch's choice; --quick: 1, robust on a busy machine)")
    parser.add_argument("--no-lightly", action="store_true", help="skip lightly even when it is installed")
    parser.add_argument("--queue-sizes", type=int, nargs="+", help="MoCo v2 queue sizes K to scale over")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="MoCo v2 batch sizes to scale over")
    parser.add_argument("--bank-sizes", type=int, nargs="+", help="memory-bank sizes (entries) to scale over")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with CIFAR-10 train/test.parquet")
    parser.add_argument("--workers", type=int,
                        help="data-loading workers of the pipeline and end-to-end sections (default: 2; --quick: 0)")
    parser.add_argument("--pipeline-batches", type=int, help="timed batches per pipeline repeat (default: 10)")
    parser.add_argument("--e2e-steps", type=int, help="timed steps per end-to-end turn (default: 20; --quick: 2)")
    parser.add_argument("--e2e-limit", type=int,
                        help="end to end: train on the first n rows of the Parquet file (default: all; --quick: 48)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 1 step: a smoke test, not a measurement")
    parser.add_argument("--json", type=Path, help="write all results here")
    parser.add_argument("--markdown", type=Path, help="write the results page here (e.g. docs/benchmarks.md)")
    parser.add_argument("--plot", type=Path, help="write the scaling plot here (e.g. docs/benchmarks.png)")
    args = parser.parse_args(argv)
    for name, (full, quick) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def lightly_models(disabled: bool) -> tuple[Any, str | None]:
    """lightly's implementations, or ``None`` and why not."""
    if disabled:
        return None, "skipped (--no-lightly)"
    try:
        from benchmarks import with_lightly
    except ImportError as error:
        return None, f"lightly is not installed ({error}); pip install '.[bench]'"
    return with_lightly, None


def measure_method(name: str, config: BenchConfig, host: PluginHost, timing: Timing, output_dir: str,
                   lightly: Any, lightly_note: str | None) -> dict[str, Any]:
    """The three implementations of one method from the same recipe, timed interleaved."""
    recipe = benchmark_recipe(METHODS[name], config, host, output_dir=output_dir)
    views = fixed_views(config)
    torch.manual_seed(config.seed)
    sslcore = SslcoreStep(recipe, host, config, views)
    lengths = (sslcore.trainer.total_steps, sslcore.trainer.steps_per_epoch)
    plain, twin = (handwritten.IMPLEMENTATIONS[name](recipe, config, views, *lengths) for _ in range(2))
    plain.load_from(sslcore.method)
    twin.load_from(sslcore.method)
    # An A/A control: the hand-written loop against an identical copy of itself. Its ratio's distance from 1 is
    # the resolution of this run: differences between implementations smaller than that are noise.
    candidates = {"sslcore": sslcore, "handwritten": plain.step, "handwritten_copy": twin.step}
    if lightly is not None:
        candidates["lightly"] = lightly.IMPLEMENTATIONS[name](recipe, config, views, *lengths).step
    for variant in METHODS[name].variants:
        torch.manual_seed(config.seed)
        varied = benchmark_recipe(METHODS[name], config, host, output_dir=output_dir, overrides=(variant,))
        candidates[f"sslcore {variant}"] = SslcoreStep(varied, host, config, views)
    times, first = interleaved(candidates, timing, config.device)
    seconds = {impl: median(values) for impl, values in times.items()}
    tolerance = LOSS_TOLERANCE[config.bf16]
    result: dict[str, Any] = {
        "recipe": METHODS[name].recipe,
        "sslcore_s": seconds["sslcore"],
        "handwritten_s": seconds["handwritten"],
        "lightly_s": seconds.get("lightly"),
        "ratio_handwritten": seconds["sslcore"] / seconds["handwritten"],
        "ratio_lightly": seconds["sslcore"] / seconds["lightly"] if "lightly" in seconds else None,
        "paired_ratio_handwritten": paired_ratio(times["sslcore"], times["handwritten"]),
        "aa_ratio": paired_ratio(times["handwritten_copy"], times["handwritten"]),
        "paired_ratio_lightly": paired_ratio(times["sslcore"], times["lightly"]) if "lightly" in times else None,
        "sslcore_images_per_s": config.batch_size / seconds["sslcore"],
        "spread": worst_spread(*times.values()),
        "repeats": times,
        "first_loss": first,
        "same_first_loss": abs(first["sslcore"] - first["handwritten"]) <= tolerance * max(1.0, abs(first["sslcore"])),
    }
    if lightly_note is not None:
        result["lightly_note"] = lightly_note
    if METHODS[name].variants:
        result["variants"] = {
            variant: {"sslcore_s": seconds[f"sslcore {variant}"],
                      "ratio_handwritten": seconds[f"sslcore {variant}"] / seconds["handwritten"]}
            for variant in METHODS[name].variants
        }
    return result


def run(args: argparse.Namespace, config: BenchConfig, timing: Timing, command: str) -> dict[str, Any]:
    if config.device == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    lightly, lightly_note = lightly_models(args.no_lightly)
    host = PluginHost()
    results: dict[str, Any] = {
        "command": command,
        "quick": args.quick,
        "config": {**vars(config), **vars(timing)},
        "machine": machine_info(config),
    }
    started = time.perf_counter()
    output_dir = tempfile.mkdtemp(prefix="sslcore-bench-")
    try:
        if "steps" in args.sections:
            results["methods"] = {}
            for name in args.methods:
                _log(f"steps: {name}")
                try:
                    results["methods"][name] = measure_method(name, config, host, timing, output_dir, lightly,
                                                              lightly_note)
                except SslcoreError as error:  # e.g. the method's plugin is not installed
                    results["methods"][name] = {"error": str(error), "plugin": METHODS[name].plugin}
        if "pipeline" in args.sections:
            _log("pipeline")
            results["pipeline"] = pipeline.data_pipeline(
                config, host, data_dir=args.data, workers=args.workers, batches=args.pipeline_batches,
                repeats=timing.repeats, output_dir=output_dir, with_lightly=lightly is not None)
        if "end_to_end" in args.sections:
            _log("end to end")
            settings = end_to_end.Settings(data_dir=args.data, output_dir=output_dir, workers=args.workers,
                                           steps=args.e2e_steps, repeats=timing.repeats, limit=args.e2e_limit,
                                           lightly_note=lightly_note)
            results["end_to_end"] = end_to_end.end_to_end(config, host, settings)
        if "scaling" in args.sections:
            results["scaling"] = _scaling(args, config, host, timing, output_dir)
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
    results["machine"]["load_average_end"] = load_average()
    results["wall_seconds"] = time.perf_counter() - started
    return results


def _scaling(args: argparse.Namespace, config: BenchConfig, host: PluginHost, timing: Timing,
             output_dir: str) -> dict[str, Any]:
    _log("scaling: queue size")
    queue = scaling.queue_steps(config, host, args.queue_sizes, timing, output_dir)
    _log("scaling: queue alone")
    component = scaling.queue_component(config, host, args.queue_sizes, timing)
    _log("scaling: batch size")
    batch = scaling.batch_steps(config, host, args.batch_sizes, timing, output_dir)
    _log("scaling: memory bank")
    bank = scaling.memory_bank(config, host, args.bank_sizes, timing)
    return {
        "queue": queue,
        "queue_growth": scaling.growth(queue, "queue_size", "sslcore_s"),
        "queue_component": component,
        "queue_component_growth": scaling.growth(component, "queue_size", "sslcore_s"),
        "batch": batch,
        "batch_growth": scaling.growth(batch, "batch_size", "sslcore_s"),
        "memory_bank": bank,
        "memory_bank_growth": {
            "update_and_sample": scaling.growth(bank, "bank_size", "update_and_sample_s"),
            "build": scaling.growth(bank, "bank_size", "build_s"),
        },
    }


_STARTED = time.perf_counter()


def _log(message: str) -> None:
    print(f"[benchmarks {time.perf_counter() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.throughput", *argv])
    try:
        config = BenchConfig(backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size,
                             device=args.device, bf16=args.bf16, channels_last=args.channels_last,
                             cifar_stem=args.cifar_stem)
        timing = Timing(warmup=args.warmup, steps=args.steps, repeats=args.repeats)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        results = run(args, config, timing, command)
    except SslcoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    if args.plot:
        report.plot(results, args.plot)
    if args.markdown:
        report.write_markdown(results, args.markdown, plot=args.plot)
    print(report.summary(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
