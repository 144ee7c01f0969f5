"""The one shape every dataset source returns: columns ``image`` (PIL, decoded lazily), ``label``, ``index``.

Sources load data their own way and then call :func:`standardize`, which checks the configured columns,
drops the others, casts the image column to ``datasets.Image`` (decoding stays lazy: an image is decoded only
when a DataLoader worker reads its row), encodes string labels as class ids, keeps the first ``limit`` rows,
numbers the rows ``index = 0..n-1`` (the position memory banks address), records where the rows come from and
what a corrupt one does (:mod:`sslcore.data.rows`) and decodes the first row, so that a column that holds no
images fails when the data is opened.
"""

from __future__ import annotations

import datasets
import pyarrow as pa

from sslcore.data.rows import CorruptRows, RowOrigin, read_row, set_origin
from sslcore.errors import SslcoreError

#: The logical splits a source serves: ``train`` (pre-training and the kNN / probe memory) and ``test``.
SPLITS: tuple[str, ...] = ("train", "test")


def check_split(split: str, source: str) -> None:
    if split not in SPLITS:
        raise SslcoreError(f"{source} source: unknown split '{split}'", hint=f"known: {', '.join(SPLITS)}")


def standardize(
    dataset: datasets.Dataset,
    *,
    image_column: str,
    label_column: str | None,
    limit: int | None,
    origin: str,
    files: tuple[tuple[str, int], ...] = (),
    corrupt: CorruptRows = "fail",
) -> datasets.Dataset:
    """``dataset`` reduced to ``image`` / ``label`` (when ``label_column`` is given) / ``index`` columns.

    ``origin`` names where the data came from (``train 'data/cifar10'``, a hub id) for error messages; ``files``
    are the files its rows come from, in row order, with their row counts; ``corrupt`` is ``[data] corrupt``.
    """
    wanted = [image_column] + ([label_column] if label_column is not None else [])
    available = dataset.column_names
    for column in wanted:
        if column not in available:
            role = "image" if column == image_column else "label"
            hint = "set image_column" if role == "image" else "set label_column, or labels = false for unlabeled data"
            raise SslcoreError(
                f"{origin} has no {role} column '{column}' (columns: {', '.join(available)})", hint=hint
            )
    dataset = dataset.select_columns(wanted)
    if limit is not None and limit < len(dataset):
        dataset = dataset.select(range(limit))  # a contiguous range: a slice of the table, no index mapping
    renames = {image_column: "image"}
    if label_column is not None:
        renames[label_column] = "label"
    dataset = dataset.rename_columns({old: new for old, new in renames.items() if old != new})
    dataset = _cast_image(dataset, image_column, origin)
    if label_column is not None:
        dataset = _cast_label(dataset, label_column, origin)
    dataset = set_origin(dataset.add_column("index", list(range(len(dataset)))), RowOrigin(origin, files, corrupt))
    if len(dataset):
        read_row(dataset, 0)
    return dataset


def _cast_image(dataset: datasets.Dataset, column: str, origin: str) -> datasets.Dataset:
    feature = dataset.features["image"]
    if isinstance(feature, datasets.Image):
        return dataset if feature.decode else dataset.cast_column("image", datasets.Image())
    try:  # encoded bytes, {bytes, path} structs or file paths
        return dataset.cast_column("image", datasets.Image())
    except (TypeError, ValueError, pa.ArrowException) as error:
        raise SslcoreError(
            f"{origin}: column '{column}' does not hold images (type {feature}): {error}",
            hint="point image_column at encoded images (PNG/JPEG bytes or paths)",
        ) from None


def _cast_label(dataset: datasets.Dataset, column: str, origin: str) -> datasets.Dataset:
    feature = dataset.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return dataset
    dtype = getattr(feature, "dtype", None)
    if dtype in ("string", "large_string"):
        return dataset.class_encode_column("label")  # class ids in sorted name order
    if isinstance(dtype, str) and dtype.startswith(("int", "uint")):
        return dataset
    raise SslcoreError(
        f"{origin}: label column '{column}' holds {feature}, not integer class ids or class names",
        hint="point label_column at integer or string labels, or set labels = false",
    )
