"""The ``images`` source: every image file below a folder, in any layout, unlabelled (``sslcore run --data DIR``).

Unlike ``image_folder`` (one subfolder per class), nothing is read from the folder structure: the files are found
recursively by extension and sorted by path, so the row order (and a memory bank's indices) does not depend on the
file system. Decoding stays lazy; any image PIL reads is used, 16-bit and float ones rescaled to 8 bits by the views
(:mod:`sslcore.data.pixels`).
"""

from __future__ import annotations

from pathlib import Path

import attrs
import datasets
from attrs import validators as v

from sslcore.data.columns import check_split, standardize
from sslcore.data.rows import CorruptRows
from sslcore.errors import SslcoreError

#: File extensions read as images (lower case; matched case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


@attrs.frozen(kw_only=True)
class ImagesSourceConfig:
    """Every image file below ``path`` (any layout, no labels), for pre-training on unlabelled data.

    ``path``: the training images' folder; ``test``: a folder of held-out images, if any; ``extensions``: the file
    endings read; ``train_limit`` / ``test_limit``: keep the first n files in path order; ``corrupt``: as for the
    other file-backed sources (``fail`` or ``skip``).
    """

    path: str
    test: str | None = None
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    train_limit: int | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    test_limit: int | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    corrupt: CorruptRows = "fail"


def image_files(folder: str, extensions: tuple[str, ...]) -> list[str]:
    """The image files below ``folder`` (recursively, hidden folders skipped), sorted by path."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise SslcoreError(f"images source: no such folder '{folder}'", hint="check the path")
    endings = tuple(ending.lower() for ending in extensions)
    files = sorted(
        str(path)
        for path in root.rglob("*")
        if path.suffix.lower() in endings
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )
    if not files:
        raise SslcoreError(
            f"images source: no image files ({', '.join(endings)}) below '{folder}'",
            hint="check the path, or set extensions",
        )
    return files


def build_images(config: ImagesSourceConfig, split: str) -> datasets.Dataset:
    """The image files of one split's folder as a dataset of lazily decoded images."""
    check_split(split, "images")
    folder = config.path if split == "train" else config.test
    if folder is None:
        raise SslcoreError("images source has no test split", hint="set test = <folder>, or drop [eval] (eval=none)")
    files = image_files(folder, config.extensions)
    limit = config.train_limit if split == "train" else config.test_limit
    files = files[:limit] if limit is not None else files
    return standardize(
        datasets.Dataset.from_dict({"image": files}),
        image_column="image",
        label_column=None,
        limit=None,
        origin=f"{split} '{folder}'",
        files=tuple((file, 1) for file in files),
        corrupt=config.corrupt,
    )
