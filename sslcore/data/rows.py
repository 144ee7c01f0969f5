"""Reading rows whose image may be corrupt: which file a row comes from, and what ``[data] corrupt`` does with it.

A source records a :class:`RowOrigin` on the dataset it returns (:func:`set_origin`). :func:`read_row` decodes one
row; when its image does not decode it fails with a one-line error naming the row and its file
(``corrupt = "fail"``), or reads the next row that decodes instead (``"skip"``), which is the same row on every
process, worker and resume, and warns once per process.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import datasets

from sslcore.console import print_warning
from sslcore.data.source_configs import CorruptRows
from sslcore.errors import SslcoreError

#: Consecutive corrupt rows after which ``skip`` stops: the data is broken as a whole, not here and there.
MAX_CONSECUTIVE_CORRUPT = 64
_ATTRIBUTE = "sslcore_origin"
_warned: set[tuple[str, int]] = set()


@attrs.frozen
class RowOrigin:
    """What the rows of a dataset are, for messages, and what a corrupt row does.

    ``name``: the rows as the recipe names them (``train 'data/cifar10'``); ``files``: each file's path and number
    of rows, in row order, when the rows come from files; ``corrupt``: ``fail`` or ``skip``.
    """

    name: str = "the dataset"
    files: tuple[tuple[str, int], ...] = ()
    corrupt: CorruptRows = "fail"

    def file(self, index: int) -> str | None:
        """The file holding row ``index``, when known."""
        end = 0
        for path, rows in self.files:
            end += rows
            if index < end:
                return path
        return None


def set_origin(dataset: datasets.Dataset, origin: RowOrigin) -> datasets.Dataset:
    """``dataset`` with ``origin`` recorded (kept by pickling and ``with_transform``, not by ``select``)."""
    setattr(dataset, _ATTRIBUTE, origin)
    return dataset


def origin_of(dataset: datasets.Dataset) -> RowOrigin:
    return getattr(dataset, _ATTRIBUTE, RowOrigin())


def read_row(dataset: datasets.Dataset, index: int, *, warn: bool = True,
             corrupt: CorruptRows | None = None) -> tuple[dict[str, Any], int]:
    """Row ``index`` with its image decoded, and the index of the row read: ``index``, or with ``corrupt = "skip"``
    the next row (wrapping around) whose image decodes (``corrupt``: instead of the dataset's own setting; ``warn``:
    whether a skipped row is warned about)."""
    origin = origin_of(dataset)
    tries = min(MAX_CONSECUTIVE_CORRUPT, len(dataset))
    first: Exception | None = None
    for offset in range(tries):
        source = (index + offset) % len(dataset)
        try:
            return dataset[source], source
        except Exception as error:  # PIL and datasets raise many types for bad bytes or missing paths
            if (corrupt or origin.corrupt) == "fail":
                raise _fault(dataset, origin, source, error) from None
            first = first or error
            if warn and (origin.name, source) not in _warned:
                _warned.add((origin.name, source))
                fault = _fault(dataset, origin, source, error)
                print_warning(f"{fault.where}: {fault.what}; skipped: the next readable row stands in for it")
    raise SslcoreError(
        f"{tries} consecutive rows of {origin.name} from row {index} on are not readable images "
        f"(the first: {_cause(first)})",
        where="[data]",
        hint="check image_column (encoded PNG/JPEG bytes or paths of image files) and the files",
    )


def read_row_deferring(dataset: datasets.Dataset, index: int) -> tuple[dict[str, Any], int, SslcoreError | None]:
    """:func:`read_row`, except that with ``corrupt = "fail"`` a corrupt row's error is returned, not raised, and the
    next readable row stands in for it until the processes of a run agree to stop on it
    (:mod:`sslcore.engine.agreement`): a process that stopped alone would leave the others waiting."""
    try:
        return (*read_row(dataset, index), None)
    except SslcoreError as fault:
        if origin_of(dataset).corrupt != "fail":
            raise
        return (*read_row(dataset, index, warn=False, corrupt="skip"), fault)


def _fault(dataset: datasets.Dataset, origin: RowOrigin, index: int, error: Exception) -> SslcoreError:
    file = origin.file(index) or _image_path(dataset, index)
    where = f" (file '{file}')" if file and f"'{file}'" not in origin.name else ""
    return SslcoreError(
        f"row {index} of {origin.name}{where} is not a readable image ({_cause(error)})",
        where="[data]",
        hint="image_column must hold encoded images (PNG/JPEG bytes) or paths of image files; fix or remove the "
        "row, or set corrupt = \"skip\" to read the next readable row in its place",
    )


def _image_path(dataset: datasets.Dataset, index: int) -> str | None:
    """The path stored with row ``index``'s image (an image folder's file), read without decoding it."""
    value = dataset.with_format("arrow")[index].column("image")[0].as_py()
    return value.get("path") if isinstance(value, dict) else None


def _cause(error: Exception | None) -> str:
    """``Type: text`` on one line, without object addresses (``<_io.BytesIO object at 0x...>``)."""
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-f]+>", "", " ".join(str(error).split()))
    return f"{type(error).__name__}: {text}"
