"""The ``images`` source: every image file below a folder, in any layout, unlabelled (``sslcore run --data DIR``).

Unlike ``image_folder`` (one subfolder per class), nothing is read from the folder structure: the files are found
recursively by extension and sorted by path, so the row order (and a memory bank's indices) does not depend on the
file system. Decoding stays lazy; any image PIL reads is used, 16-bit and float ones rescaled to 8 bits by the views
(:mod:`sslcore.data.pixels`).
"""

from __future__ import annotations

from pathlib import Path

import datasets

from sslcore.data.columns import check_split, standardize
from sslcore.data.source_configs import ImagesSourceConfig
from sslcore.errors import SslcoreError


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
