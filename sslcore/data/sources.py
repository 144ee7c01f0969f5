"""Built-in dataset sources: ``parquet``, ``hub``, ``image_folder``, ``saved``, the embedded ``digits`` and
``images`` (:mod:`sslcore.data.image_files`).

Each is ``factory(config, split) -> datasets.Dataset`` for ``split`` in ``("train", "test")``, with columns
``image`` (PIL, decoded lazily), ``label`` (int class id; absent for unlabeled data) and ``index`` (0..n-1).
Files go through HuggingFace ``datasets``, which converts them once into memory-mapped Arrow files in its cache
(``HF_DATASETS_CACHE``); later runs reuse them, and nothing needs the network when ``HF_DATASETS_OFFLINE=1``.
Relative paths are relative to the working directory. A Parquet file that is empty, truncated or not Parquet is
an error when the data is opened (its footer is read first), and so is a first row whose image does not decode;
``corrupt`` decides what a corrupt image further on does (:mod:`sslcore.data.rows`).
"""

from __future__ import annotations

import glob
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from sslcore.data.columns import check_split, standardize
from sslcore.data.digits import digits_split
from sslcore.data.source_configs import (
    DigitsSourceConfig,
    HubSourceConfig,
    ImageFolderSourceConfig,
    ParquetSourceConfig,
    SavedSourceConfig,
)
from sslcore.errors import SslcoreError


def _split_path(path: str | None, split: str, source: str) -> str:
    if path is None:
        raise SslcoreError(f"{source} source has no {split} split", hint=f"set {split} = <path>")
    return path


def _parquet_files(path: str) -> list[str]:
    location = Path(path).expanduser()
    if location.is_file():
        return [str(location)]
    if location.is_dir():
        files = sorted(str(p) for p in location.rglob("*.parquet"))
    elif glob.has_magic(path):
        files = sorted(glob.glob(str(location), recursive=True))
    else:
        raise SslcoreError(f"parquet source: no such file or folder '{path}'", hint="check the path")
    if not files:
        raise SslcoreError(f"parquet source: no .parquet files at '{path}'", hint="check the path")
    return files


def _parquet_rows(file: str, split: str) -> int:
    """The row count in a Parquet file's footer (read alone: cheap); an empty, truncated or other file is an error."""
    try:
        return pq.read_metadata(file).num_rows
    except (OSError, pa.ArrowException) as error:
        empty = Path(file).is_file() and Path(file).stat().st_size == 0
        reason = " ".join(str(error).split()).split(". ")[0]
        what = "is empty (0 bytes)" if empty else f"is not a complete Parquet file ({reason})"
        raise SslcoreError(
            f"{split} file '{file}' {what}", hint=f"replace it with a complete Parquet file, or leave it out of {split}"
        ) from None


def _unreadable(files: list[str]) -> str | None:
    """The first file whose data pages do not read (a corrupt file with an intact footer)."""
    for file in files:
        try:
            for _ in pq.ParquetFile(file).iter_batches():
                pass
        except (OSError, pa.ArrowException):
            return file
    return None


def build_parquet(config: ParquetSourceConfig, split: str) -> datasets.Dataset:
    """Local Parquet files: a file, a folder of files or a glob per split."""
    check_split(split, "parquet")
    path = _split_path(config.train if split == "train" else config.test, split, "parquet")
    counts = tuple((file, rows) for file in _parquet_files(path) if (rows := _parquet_rows(file, split)))
    if not counts:
        raise SslcoreError(f"{split} '{path}' holds no rows", hint=f"point {split} at Parquet files with rows")
    files = [file for file, _ in counts]  # files without rows are left out: the Parquet reader fails on them
    try:
        dataset = datasets.load_dataset("parquet", data_files=files, split="train")
    except datasets.exceptions.DatasetGenerationError as error:
        bad = _unreadable(files)
        raise SslcoreError(
            f"{split} file '{bad or path}' is corrupt: {' '.join(str(error.__cause__ or error).split())}",
            hint=f"replace it with a complete Parquet file, or leave it out of {split}",
        ) from None
    return config.finish(dataset, split, f"{split} '{path}'", counts)


def build_hub(config: HubSourceConfig, split: str) -> datasets.Dataset:
    """A HuggingFace hub dataset by id (and revision), from the local cache when offline."""
    check_split(split, "hub")
    hub_split = config.train_split if split == "train" else config.test_split
    if hub_split is None:
        raise SslcoreError(f"hub dataset '{config.path}' is configured without a {split} split", hint="set test_split")
    try:
        dataset = datasets.load_dataset(config.path, config.name, revision=config.revision, split=hub_split)
    except OSError as error:  # not found, not cached while offline, network down
        raise SslcoreError(
            f"cannot load hub dataset '{config.path}': {error}",
            hint="check the id; offline (HF_HUB_OFFLINE=1) it must already be in the HuggingFace cache",
        ) from None
    except ValueError as error:  # unknown split or configuration name
        raise SslcoreError(
            f"hub dataset '{config.path}': {error}", hint="check train_split / test_split / name"
        ) from None
    return config.finish(dataset, split, f"hub dataset '{config.path}' split '{hub_split}'")


def build_image_folder(config: ImageFolderSourceConfig, split: str) -> datasets.Dataset:
    """A folder of images per split, one subfolder per class."""
    check_split(split, "image_folder")
    path = _split_path(config.train if split == "train" else config.test, split, "image_folder")
    if not Path(path).expanduser().is_dir():
        raise SslcoreError(f"image_folder source: no such folder '{path}'", hint="check the path")
    try:
        dataset = datasets.load_dataset("imagefolder", data_dir=str(Path(path).expanduser()), split="train")
    except (OSError, ValueError) as error:  # no images found, unreadable files
        raise SslcoreError(f"image_folder source: cannot read '{path}': {error}", hint="check the folder") from None
    return config.finish(dataset, split, f"{split} '{path}'")


def build_saved(config: SavedSourceConfig, split: str) -> datasets.Dataset:
    """A dataset saved with ``save_to_disk``."""
    check_split(split, "saved")
    if not Path(config.path).expanduser().is_dir():
        raise SslcoreError(f"saved source: no such folder '{config.path}'", hint="check the path")
    try:
        loaded = datasets.load_from_disk(str(Path(config.path).expanduser()))
    except FileNotFoundError as error:
        raise SslcoreError(
            f"saved source: '{config.path}' is not a folder written by save_to_disk: {error}", hint="check the path"
        ) from None
    if isinstance(loaded, datasets.Dataset):
        if split != "train":
            raise SslcoreError(
                f"saved source: '{config.path}' holds a single dataset, which serves as the train split only",
                hint="save a DatasetDict with train and test splits",
            )
        return config.finish(loaded, split, f"saved dataset '{config.path}'")
    name = config.train_split if split == "train" else config.test_split
    if name is None or name not in loaded:
        raise SslcoreError(
            f"saved dataset '{config.path}' has no {split} split named '{name}' (splits: {', '.join(loaded)})",
            hint=f"set {split}_split",
        )
    return config.finish(loaded[name], split, f"saved dataset '{config.path}' split '{name}'")


def build_digits(config: DigitsSourceConfig, split: str) -> datasets.Dataset:
    """scikit-learn's handwritten digits, embedded: 1437 train / 360 test images, 10 classes."""
    check_split(split, "digits")
    return standardize(
        digits_split(split, config.size),
        image_column="image",
        label_column="label" if config.labels else None,
        limit=config.train_limit if split == "train" else config.test_limit,
        origin="digits",
    )


