"""Smoke test of the benchmark command (``python -m benchmarks.throughput --quick``): it runs end to end at tiny
sizes and reports every number it promises. It checks that the benchmark works, not how fast anything is."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # two benchmark runs in subprocesses, about a minute on 2 cores

ROOT = Path(__file__).resolve().parents[2]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10"
HAS_LIGHTLY = importlib.util.find_spec("lightly") is not None
METHODS = ("mocov2", "simclr", "byol", "simsiam", "mocov3")
STEP_KEYS = ("sslcore_s", "handwritten_s", "lightly_s", "ratio_handwritten", "ratio_lightly")
#: The end-to-end pipelines every run measures; the view-pipeline variants are measured or say why not.
E2E_ALWAYS = ("sslcore", "sslcore_copy", "sslcore_cache")
E2E_VARIANTS = ("sslcore_batched", "sslcore_batched_cache")
# Runs main() with lightly made unimportable, as on a machine without it.
WITHOUT_LIGHTLY = "import sys; sys.modules['lightly'] = None; from benchmarks.throughput import main; sys.exit(main())"


def run_benchmark(args: list[str], *, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "benchmarks.throughput", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    done = run_benchmark(["--quick", "--json", str(out / "out.json"), "--markdown", str(out / "benchmarks.md"),
                          "--plot", str(out / "benchmarks.png")])
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / "out.json").read_text()), out


def positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_every_method_reports_its_step_times_and_ratios(quick):
    results, _ = quick
    assert set(results["methods"]) == set(METHODS)
    for name, r in results["methods"].items():
        assert set(STEP_KEYS) <= set(r), name
        assert positive(r["sslcore_s"]) and positive(r["handwritten_s"]), name
        assert r["ratio_handwritten"] == pytest.approx(r["sslcore_s"] / r["handwritten_s"]), name
        assert positive(r["aa_ratio"]) and positive(r["paired_ratio_handwritten"]), name
    assert positive(results["methods"]["mocov2"]["variants"]["loss.normalize=false"]["sslcore_s"])
    machine = results["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch"] and machine["device"] == "cpu"


def test_sslcore_and_the_handwritten_loop_compute_the_same_first_loss(quick):
    results, _ = quick
    for name, r in results["methods"].items():
        assert r["same_first_loss"], (name, r["first_loss"])
        assert r["first_loss"]["sslcore"] == pytest.approx(r["first_loss"]["handwritten"], rel=1e-3), name


@pytest.mark.skipif(not HAS_LIGHTLY, reason="lightly is not installed (pip install '.[bench]')")
def test_lightly_columns_are_measured_when_lightly_is_installed(quick):
    results, _ = quick
    for name, r in results["methods"].items():
        assert positive(r["lightly_s"]), name
        assert r["ratio_lightly"] == pytest.approx(r["sslcore_s"] / r["lightly_s"]), name
        assert math.isfinite(r["first_loss"]["lightly"]), name


def test_without_lightly_its_columns_are_skipped_cleanly(tmp_path):
    out = tmp_path / "out.json"
    done = run_benchmark(["--quick", "--methods", "simsiam", "--sections", "steps", "--json", str(out),
                          "--markdown", str(tmp_path / "b.md")], code=WITHOUT_LIGHTLY)
    assert done.returncode == 0, done.stderr[-4000:]
    r = json.loads(out.read_text())["methods"]["simsiam"]
    assert r["lightly_s"] is None and r["ratio_lightly"] is None and "lightly" not in r["first_loss"]
    assert "not installed" in r["lightly_note"]
    assert positive(r["sslcore_s"]) and positive(r["handwritten_s"])
    assert "not installed" in (tmp_path / "b.md").read_text()


def test_scaling_rows_cover_every_size_with_positive_times(quick):
    scaling = quick[0]["scaling"]
    assert [r["queue_size"] for r in scaling["queue"]] == [256, 1024]
    assert [r["queue_size"] for r in scaling["queue_component"]] == [256, 1024]
    assert [r["batch_size"] for r in scaling["batch"]] == [8, 16]
    assert [r["bank_size"] for r in scaling["memory_bank"]] == [1_000, 10_000]
    for rows in (scaling["queue"], scaling["queue_component"], scaling["batch"]):
        for row in rows:
            assert positive(row["sslcore_s"]) and positive(row["handwritten_s"]), row
    for row in scaling["memory_bank"]:
        assert positive(row["update_s"]) and positive(row["sample_s"]) and positive(row["build_s"]), row
    assert math.isfinite(scaling["memory_bank_growth"]["update_and_sample"]["exponent"])


def test_data_pipeline_is_measured_or_skipped_with_a_reason(quick):
    result = quick[0]["pipeline"]
    if not (CIFAR / "train.parquet").is_file():
        assert "no CIFAR-10 Parquet files" in result["skipped"]
        return
    assert positive(result["sslcore_images_per_s"])
    assert positive(result["lightly_images_per_s"]) if HAS_LIGHTLY else result["lightly_images_per_s"] is None


def test_end_to_end_rows_are_measured_with_positive_rates(quick):
    result = quick[0]["end_to_end"]
    if not (CIFAR / "train.parquet").is_file():
        assert "no CIFAR-10 Parquet file" in result["skipped"]
        return
    table = result["methods"]["simclr"]
    rates, notes = table["images_per_s"], table.get("notes", {})
    assert set(E2E_ALWAYS) <= set(rates) and all(name in rates or name in notes for name in E2E_VARIANTS)
    assert ("lightly" in rates) == HAS_LIGHTLY
    for name, rate in rates.items():
        assert positive(rate), name
        assert positive(table["ratio"][name]), name
    assert table["ratio"]["sslcore"] == 1.0 and positive(table["aa_ratio"])
    assert table["same_first_loss_cache"] is True  # the decoded cache feeds the step the same pixels
    assert "### End to end (Parquet file to optimizer step)" in (quick[1] / "benchmarks.md").read_text()


def test_device_cuda_without_cuda_is_a_one_line_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = run_benchmark(["--quick", "--device", "cuda", "--sections", "end_to_end"])
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --device cuda was asked for, but torch sees no CUDA device"


def test_markdown_page_and_plot_are_written(quick):
    results, out = quick
    page = (out / "benchmarks.md").read_text()
    assert results["command"].startswith("python -m benchmarks.throughput --quick")
    assert results["command"] in page
    assert "| mocov3 |" in page and "smoke run" in page and "![scaling curves](benchmarks.png)" in page
    assert (out / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if results["end_to_end"].get("methods"):  # measured here (skipped without ../shared/data)
        assert "![end-to-end images per second](benchmarks-end-to-end.png)" in page
        assert (out / "benchmarks-end-to-end.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

