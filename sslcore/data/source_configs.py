"""The built-in dataset sources' options and their registration; the sources are built by :mod:`sslcore.data.sources`
and :mod:`sslcore.data.image_files`, imported only when a run builds one (so `sslcore list` needs no datasets or
torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs
from attrs import validators as v

from sslcore import hookimpl

if TYPE_CHECKING:
    import datasets

#: What a source does with a row whose image does not decode: stop the run, or skip the row with a warning.
CorruptRows = Literal["fail", "skip"]
#: The decoded-image cache (:mod:`sslcore.data.decoded_cache`): off, or decoded pixels in a memory-mapped file.
CacheMode = Literal["none", "decoded"]


@attrs.frozen(kw_only=True)
class CacheOptions:
    """The decoded-image cache of the training rows (:mod:`sslcore.data.decoded_cache`).

    ``cache``: ``none`` (decode every image each time it is read) or ``decoded`` (decode once into a memory-mapped
    file, reused by later runs); ``cache_dir``: where the entries live (unset: ``$XDG_CACHE_HOME/sslcore/decoded``);
    ``cache_max_side``: shrink each image so that its longer side is at most this when caching (unset: the
    original size). Ignored unless ``cache = "decoded"``.
    """

    cache: CacheMode = "none"
    cache_dir: str | None = None
    cache_max_side: int | None = attrs.field(default=None, validator=v.optional(v.ge(8)))


#: File extensions read as images (lower case; matched case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


@attrs.frozen(kw_only=True)
class ImagesSourceConfig(CacheOptions):
    """Every image file below ``path`` (any layout, no labels), for pre-training on unlabelled data.

    ``path``: the training images' folder; ``test``: a folder of held-out images, if any; ``extensions``: the file
    endings read; ``train_limit`` / ``test_limit``: keep the first n files in path order; ``corrupt``: as for the
    other file-backed sources (``fail`` or ``skip``); the decoded-image cache's fields as in ``CacheOptions``.
    """

    path: str
    test: str | None = None
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    train_limit: int | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    test_limit: int | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    corrupt: CorruptRows = "fail"


_LIMIT = {"default": None, "validator": v.optional(v.gt(0))}


@attrs.frozen(kw_only=True)
class SourceColumns(CacheOptions):
    """Fields every file-backed source shares, besides the decoded-image cache's (``CacheOptions``).

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
        from sslcore.data.columns import standardize  # imported here: the options are read without datasets

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
class DigitsSourceConfig(CacheOptions):
    """scikit-learn's 1797 handwritten digits (8x8, 10 classes), embedded, no download: the default dataset.

    ``size``: the side the 8x8 images are upscaled to (bilinear) as RGB images; a fixed stratified split gives
    1437 train and 360 test images. ``labels``, ``train_limit`` and ``test_limit`` as in ``SourceColumns``; the
    decoded-image cache's fields as in ``CacheOptions``.
    """

    size: int = attrs.field(default=32, validator=v.ge(8))
    labels: bool = True
    train_limit: int | None = attrs.field(**_LIMIT)
    test_limit: int | None = attrs.field(**_LIMIT)


@hookimpl
def sslcore_register_datasets(registry):
    registry.add("parquet", "sslcore.data.sources:build_parquet", ParquetSourceConfig)
    registry.add("hub", "sslcore.data.sources:build_hub", HubSourceConfig)
    registry.add("image_folder", "sslcore.data.sources:build_image_folder", ImageFolderSourceConfig)
    registry.add("saved", "sslcore.data.sources:build_saved", SavedSourceConfig)
    registry.add("digits", "sslcore.data.sources:build_digits", DigitsSourceConfig)
    registry.add("images", "sslcore.data.image_files:build_images", ImagesSourceConfig)
