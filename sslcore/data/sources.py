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

import attrs
import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from attrs import validators as v

from sslcore import hookimpl
from sslcore.data.columns import check_split, standardize
from sslcore.data.digits import digits_split
from sslcore.data.image_files import ImagesSourceConfig, build_images
from sslcore.data.rows import CorruptRows
from sslcore.errors import SslcoreError

_LIMIT = {"default": None, "validator": v.optional(v.gt(0))}


@attrs.frozen(kw_only=True)
class SourceColumns:
    """Fields every file-backed source shares.

    ``image_column``: the column holding encoded images (or paths); ``label_column``: the column holding class
    ids or class names (names become ids in sorted order); ``labels = false`` ignores labels (unlabeled data;
    kNN and linear evaluation then report a clear error); ``train_limit`` / ``test_limit``: keep only the first
    n rows of that split (CIFAR-10 and most hub sets are shuffled, so a prefix is a fair subset); ``corrupt``: a
    row whose image does not decode stops the run with an error naming the row and its file (``fail``), or is
    replaced by the next readable row, with a warning, and counted in ``summary.json`` (``skip``).
    """

    image_column: str = "image"
    label_column: str = "label"
    labels: bool = True
    train_limit: int | None = attrs.field(**_LIMIT)
    test_limit: int | None = attrs.field(**_LIMIT)
    corrupt: CorruptRows = "fail"

    def finish(
        self, dataset: datasets.Dataset, split: str, origin: str, files: tuple[tuple[str, int], ...] = ()
    ) -> datasets.Dataset:
        return standardize(
            dataset,
            image_column=self.image_column,
            label_column=self.label_column if self.labels else None,
            limit=self.train_limit if split == "train" else self.test_limit,
            origin=origin,
            files=files,
            corrupt=self.corrupt,
        )


@attrs.frozen(kw_only=True)
class ParquetSourceConfig(SourceColumns):
    """Local Parquet files (the format of HuggingFace hub datasets).

    ``train`` / ``test``: a ``.parquet`` file, a folder (every ``.parquet`` file below it, in sorted order) or a
    glob pattern; ``test`` may be left out when there is no test split. Plus the fields of ``SourceColumns``.
    """

    train: str
    test: str | None = None


@attrs.frozen(kw_only=True)
class HubSourceConfig(SourceColumns):
    """A dataset on the HuggingFace hub (or a local folder in hub layout), e.g. ``uoft-cs/cifar10``.

    ``path``: the hub id; ``name``: its configuration, if it has several; ``revision``: a branch, tag or commit
    to pin; ``train_split`` / ``test_split``: the hub's names for the two splits (ImageNet's test split is
    ``validation``). Offline (``HF_HUB_OFFLINE=1``) it loads from the local cache. Plus the fields of
    ``SourceColumns`` (CIFAR-10 on the hub calls its image column ``img``).
    """

    path: str
    name: str | None = None
    revision: str | None = None
    train_split: str = "train"
    test_split: str | None = "test"


@attrs.frozen(kw_only=True)
class ImageFolderSourceConfig(SourceColumns):
    """Image files in one folder per split, with one subfolder per class (``train/cat/001.png``).

    ``train`` / ``test``: the split folders; labels are the subfolder names in sorted order. A folder without
    class subfolders is unlabeled: set ``labels = false``. Plus the fields of ``SourceColumns``.
    """

    train: str
    test: str | None = None


@attrs.frozen(kw_only=True)
class SavedSourceConfig(SourceColumns):
    """A dataset written by ``DatasetDict.save_to_disk`` (loaded memory-mapped with ``load_from_disk``).

    ``path``: the folder; ``train_split`` / ``test_split``: its split names. A folder holding a single
    ``Dataset`` (no splits) serves as the train split. Plus the fields of ``SourceColumns``.
    """

    path: str
    train_split: str = "train"
    test_split: str | None = "test"


@attrs.frozen(kw_only=True)
class DigitsSourceConfig:
    """scikit-learn's 1797 handwritten digits (8x8, 10 classes), embedded, no download: the default dataset.

    ``size``: the side the 8x8 images are upscaled to (bilinear) as RGB images; a fixed stratified split gives
    1437 train and 360 test images. ``labels``, ``train_limit`` and ``test_limit`` as in ``SourceColumns``.
    """

    size: int = attrs.field(default=32, validator=v.ge(8))
    labels: bool = True
    train_limit: int | None = attrs.field(**_LIMIT)
    test_limit: int | None = attrs.field(**_LIMIT)


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


@hookimpl
def sslcore_register_datasets(registry):
    registry.add("parquet", build_parquet, ParquetSourceConfig)
    registry.add("hub", build_hub, HubSourceConfig)
    registry.add("image_folder", build_image_folder, ImageFolderSourceConfig)
    registry.add("saved", build_saved, SavedSourceConfig)
    registry.add("digits", build_digits, DigitsSourceConfig)
    registry.add("images", build_images, ImagesSourceConfig)
