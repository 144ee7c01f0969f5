"""Faults in data files: one-line errors naming the file and the split when the data is opened; a corrupt row met
later named with its file, or skipped (``[data] corrupt = "skip"``) deterministically, with a warning and a count in
``summary.json``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sslcore import Method, MethodOutput, hookimpl
from sslcore.data.loaders import make_eval_loader
from sslcore.data.rows import read_row
from sslcore.data.sources import ParquetSourceConfig, build_parquet
from sslcore.data.views import EvalViewsConfig, build_eval
from sslcore.engine.data import EpochSampler, TrainingViews, collate
from sslcore.engine.trainer import Trainer
from sslcore.errors import SslcoreError
from sslcore.recipe import resolve_document
from sslcore.testing import tiny_host

BAD = b"not an image"
REPLACE = "replace it with a complete Parquet file, or leave it out of"
ROW_HINT = (
    "image_column must hold encoded images (PNG/JPEG bytes) or paths of image files; fix or remove the row, or set "
    'corrupt = "skip" to read the next readable row in its place'
)


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _parquet(path: Path, images: list, labels: list[int] | None = None) -> str:
    labels = list(range(len(images))) if labels is None else labels
    pq.write_table(pa.table({"image": images, "label": labels}), path)
    return str(path)


def _good(path: Path, n: int = 4) -> str:
    return _parquet(path, [_png(10 * i) for i in range(n)])


def _empty(tmp_path: Path) -> str:
    (tmp_path / "d.parquet").write_bytes(b"")
    return str(tmp_path / "d.parquet")


def _truncated(tmp_path: Path) -> str:
    data = Path(_good(tmp_path / "whole.parquet")).read_bytes()
    (tmp_path / "d.parquet").write_bytes(data[: len(data) // 2])
    return str(tmp_path / "d.parquet")


def _csv(tmp_path: Path) -> str:
    (tmp_path / "d.parquet").write_text("image,label\ncat.png,1\n")
    return str(tmp_path / "d.parquet")


def _no_rows(tmp_path: Path) -> str:
    return _parquet(tmp_path / "d.parquet", pa.array([], pa.binary()), [])


def _strings(tmp_path: Path) -> str:
    return _parquet(tmp_path / "d.parquet", ["cat.png", "dog.png"])


def _undecodable(tmp_path: Path) -> str:
    return _parquet(tmp_path / "d.parquet", [BAD, BAD[:4]])


FILE_FAULTS = {
    "empty file": (_empty, "{split} file '{file}' is empty (0 bytes); " + REPLACE + " {split}"),
    "truncated file": (
        _truncated,
        "{split} file '{file}' is not a complete Parquet file (Parquet magic bytes not found in footer); "
        + REPLACE + " {split}",
    ),
    "not Parquet": (
        _csv,
        "{split} file '{file}' is not a complete Parquet file (Parquet magic bytes not found in footer); "
        + REPLACE + " {split}",
    ),
    "no rows": (_no_rows, "{split} '{file}' holds no rows; point {split} at Parquet files with rows"),
    "strings in the image column": (
        _strings,
        "[data]: row 0 of {split} '{file}' is not a readable image (FileNotFoundError: [Errno 2] No such file or "
        "directory: 'cat.png'); " + ROW_HINT,
    ),
    "undecodable bytes": (
        _undecodable,
        "[data]: row 0 of {split} '{file}' is not a readable image (UnidentifiedImageError: cannot identify image "
        "file); " + ROW_HINT,
    ),
}


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("fault", FILE_FAULTS)
def test_a_broken_file_fails_when_the_data_is_opened(tmp_path, fault, split):
    make, message = FILE_FAULTS[fault]
    file = make(tmp_path)
    good = _good(tmp_path / "good.parquet")
    config = ParquetSourceConfig(train=file if split == "train" else good, test=file if split == "test" else good)
    with pytest.raises(SslcoreError) as caught:
        build_parquet(config, split)
    assert str(caught.value) == message.format(split=split, file=file)


def test_a_file_corrupt_inside_is_named(tmp_path):
    _good(tmp_path / "a.parquet")
    values = pa.table({"image": [np.random.default_rng(0).bytes(2000) for _ in range(100)], "label": range(100)})
    pq.write_table(values, tmp_path / "b.parquet", compression="none", write_statistics=False)
    data = bytearray((tmp_path / "b.parquet").read_bytes())
    for position in range(len(data) // 3, 2 * len(data) // 3, 97):  # inside the image column's data page
        data[position] ^= 0xFF
    (tmp_path / "b.parquet").write_bytes(bytes(data))
    with pytest.raises(SslcoreError, match=rf"^train file '{tmp_path}/b.parquet' is corrupt: .*; {REPLACE} train$"):
        build_parquet(ParquetSourceConfig(train=str(tmp_path)), "train")


def _two_files(folder: Path, corrupt: str = "fail", bad: tuple[int, ...] = (4,)) -> ParquetSourceConfig:
    """Rows 0-2 in folder/a.parquet, 3-7 in folder/b.parquet; the rows in ``bad`` hold bytes that are no image."""
    folder.mkdir(exist_ok=True)
    images = [BAD if row in bad else _png(10 * row) for row in range(8)]
    _parquet(folder / "a.parquet", images[:3], [0, 1, 2])
    _parquet(folder / "b.parquet", images[3:], [3, 4, 5, 6, 7])
    return ParquetSourceConfig(train=str(folder), corrupt=corrupt)


def _pixel(image: torch.Tensor | Image.Image) -> int:
    return int(np.asarray(image)[0, 0, 0])


def test_a_corrupt_row_met_in_a_worker_names_the_row_and_its_file(tmp_path):
    dataset = build_parquet(_two_files(tmp_path), "train")
    views = TrainingViews(dataset, lambda image: [torch.zeros(1)], seed=0)
    loader = DataLoader(views, batch_size=4, sampler=EpochSampler(8, 8, seed=0, shuffle=False), num_workers=1,
                        collate_fn=collate)
    with pytest.raises(SslcoreError) as caught:
        list(loader)
    assert str(caught.value) == (
        f"[data]: row 4 of train '{tmp_path}' (file '{tmp_path}/b.parquet') is not a readable image "
        f"(UnidentifiedImageError: cannot identify image file); {ROW_HINT}"
    )


def test_skip_reads_the_next_readable_row_and_warns_once(tmp_path, capsys):
    dataset = build_parquet(_two_files(tmp_path, "skip", bad=(4, 5, 7)), "train")
    capsys.readouterr()
    row, source = read_row(dataset, 4)
    assert (source, row["label"], _pixel(row["image"])) == (6, 6, 60)
    row, source = read_row(dataset, 7)  # the last row: the next readable one wraps around to the first
    assert (source, row["label"]) == (0, 0)
    assert read_row(dataset, 4)[1] == 6 and read_row(dataset, 3)[1] == 3
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [
        f"warning: [data]: row {row} of train '{tmp_path}' (file '{tmp_path}/b.parquet') is not a readable image "
        "(UnidentifiedImageError: cannot identify image file); skipped: the next readable row stands in for it"
        for row in (4, 5, 7)
    ]


def test_skip_stops_when_no_row_is_readable(tmp_path):
    file = _undecodable(tmp_path)
    with pytest.raises(SslcoreError) as caught:
        build_parquet(ParquetSourceConfig(train=file, corrupt="skip"), "train")
    assert str(caught.value) == (
        f"[data]: 2 consecutive rows of train '{file}' from row 0 on are not readable images (the first: "
        "UnidentifiedImageError: cannot identify image file); check image_column (encoded PNG/JPEG bytes or paths of "
        "image files) and the files"
    )


def test_the_evaluation_loader_fails_or_skips_as_configured(tmp_path):
    transform = build_eval(EvalViewsConfig())
    failing = build_parquet(_two_files(tmp_path / "fail"), "train")
    with pytest.raises(SslcoreError, match=r"^\[data\]: row 4 of train .* is not a readable image"):
        list(make_eval_loader(failing, transform, batch_size=3, num_workers=1))
    skipping = build_parquet(_two_files(tmp_path / "skip", "skip"), "train")
    batches = list(make_eval_loader(skipping, transform, batch_size=3, num_workers=0))
    assert torch.cat([batch["index"] for batch in batches]).tolist() == list(range(8))
    assert torch.cat([batch["label"] for batch in batches]).tolist() == [0, 1, 2, 3, 5, 5, 6, 7]


# --- a run with corrupt rows skipped: the count in summary.json -------------------------------------------------


@attrs.frozen(kw_only=True)
class _NoOptions:
    pass


class _Mean(Method):
    """The smallest method: the mean square of the first view's features."""

    def __init__(self, parts) -> None:
        super().__init__()
        self.backbone = parts.backbone()

    def forward(self, batch, step):
        return MethodOutput(self.backbone(batch.views[0]).pow(2).mean())


@hookimpl
def _register_mean(registry):
    registry.add("mean", lambda config, parts: _Mean(parts), _NoOptions)


MEAN_PLUGIN = type("MeanPlugin", (), {"sslcore_register_methods": staticmethod(_register_mean)})


@pytest.mark.parametrize("corrupt", ["skip", "fail"])
def test_a_run_counts_the_corrupt_rows_it_skipped(tmp_path, corrupt):
    _two_files(tmp_path / "data", bad=(4, 6))
    document = {
        "run": {"name": "r", "output_dir": str(tmp_path / "runs"), "epochs": 3, "batch_size": 4, "num_workers": 2,
                "progress": False},
        "data": {"kind": "parquet", "train": str(tmp_path / "data"), "corrupt": corrupt},
        "views": {"kind": "eval"},
        "backbone": {"kind": "tiny", "width": 4},
        "method": {"kind": "mean"},
        "optimizer": {"kind": "sgd", "base_lr": 0.1},
    }
    recipe = resolve_document(document, "recipe.toml", tiny_host("mean", MEAN_PLUGIN))
    trainer = Trainer(recipe, tiny_host("mean", MEAN_PLUGIN))
    if corrupt == "fail":
        with pytest.raises(SslcoreError, match=r"^\[data\]: row [46] of train .*b\.parquet.* is not a readable image"):
            trainer.fit()
        return
    summary = trainer.fit()
    assert summary["corrupt_rows_skipped"] == 2 * 3  # every row is drawn once per epoch
    assert json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())["corrupt_rows_skipped"] == 6
