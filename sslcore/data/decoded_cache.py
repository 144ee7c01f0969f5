"""The decoded-image cache (``[data] cache = "decoded"``): a training set decoded once into memory-mapped uint8 pixels.

Decoding PNG/JPEG bytes costs a DataLoader worker about as much as augmenting them (FFCV's and DALI's observation,
and ours on CIFAR-10). With the cache, the first run decodes every training row once (converted to 8-bit RGB as the
views would, :func:`sslcore.data.pixels.to_rgb`; with ``cache_max_side`` shrunk so that its longer side is at most
that, keeping the aspect ratio, with PIL's antialiased bicubic filter) and writes one entry under ``cache_dir``:

- ``pixels.u8``: every image's HWC RGB bytes, one after another (no padding: images may differ in size);
- ``index.npy``: per row ``(offset, height, width, label)``; height 0 marks a row that did not decode when the
  cache was built, which is then read from the source, so ``[data] corrupt`` fails or skips it exactly as without
  the cache; label -1 when the data has no labels;
- ``meta.json``: the source's fingerprint: the ``datasets`` fingerprint of the rows, the row count, the maximum
  side, and the size and modification time of every file the rows come from.

An entry is written into a temporary folder and renamed into place, so a run never sees half of one. A later run
reuses it when the fingerprint matches, and rebuilds it otherwise, saying why. In a run on several processes, the
first process on each machine builds (the others wait), then every process opens it read-only; each DataLoader
worker maps the pixels itself (lazily, on its first row), so the operating system's page cache holds them once.

``cache_dir`` unset: ``$XDG_CACHE_HOME/sslcore/decoded`` (``~/.cache/sslcore/decoded``), beside HuggingFace's own
caches, so that every run on the same data shares one entry. Evaluation reads the source as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from accelerate import Accelerator
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from sslcore.console import out
from sslcore.data.pixels import to_rgb
from sslcore.data.rows import origin_of, set_origin
from sslcore.data.source_configs import CacheOptions
from sslcore.engine.agreement import raise_first
from sslcore.errors import SslcoreError

#: Bumped when the layout of an entry changes: older entries are then rebuilt.
FORMAT_VERSION = 1
_NO_LABEL = -1


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sslcore" / "decoded"


def fingerprint(dataset: datasets.Dataset, max_side: int | None) -> dict[str, Any]:
    """What the cached pixels depend on; an entry whose recorded fingerprint differs is stale."""
    files = sorted({path for path, _ in origin_of(dataset).files})
    return {
        "version": FORMAT_VERSION,
        "rows": len(dataset),
        "max_side": max_side,
        "dataset": dataset._fingerprint,  # datasets' hash of the rows (files, selection, casts); no public accessor
        "files": [[str(Path(file).resolve()), *_stat(file)] for file in files],
    }


def _stat(file: str) -> list[int]:
    status = os.stat(file)
    return [status.st_size, status.st_mtime_ns]


def entry_path(dataset: datasets.Dataset, options: CacheOptions) -> Path:
    """The folder of ``dataset``'s entry: named by where the rows come from, their count and the maximum side (not
    by their content, so that a changed source finds, and replaces, its stale entry)."""
    origin = origin_of(dataset)
    identity = json.dumps(
        [origin.name, sorted({str(Path(f).resolve()) for f, _ in origin.files}), len(dataset), options.cache_max_side]
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    root = Path(options.cache_dir).expanduser() if options.cache_dir is not None else default_cache_dir()
    return root / f"{digest}-{len(dataset)}-{options.cache_max_side or 'full'}"


def stale_reason(entry: Path, expected: dict[str, Any]) -> str | None:
    """Why ``entry`` cannot be used (missing, or built from other data), or None when it matches ``expected``."""
    try:
        found = json.loads((entry / "meta.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return "not built yet"
    if found == expected:
        return None
    if found.get("version") != expected["version"]:
        return "it was written in an older format"
    if found.get("rows") != expected["rows"]:
        return f"the source now has {expected['rows']} rows, the cache {found.get('rows')}"
    changed = [path for path, *stat in expected["files"] if [path, *stat] not in found.get("files", [])]
    if changed:
        return f"'{changed[0]}' changed since it was cached (size or modification time)"
    return "the source's rows changed (their datasets fingerprint differs)"


def decode(image: Image.Image, max_side: int | None) -> np.ndarray:
    """``image`` as HWC uint8 RGB, shrunk so that its longer side is at most ``max_side`` (aspect ratio kept)."""
    image = to_rgb(image)
    longer = max(image.size)
    if max_side is not None and longer > max_side:
        size = tuple(max(1, round(side * max_side / longer)) for side in image.size)
        image = image.resize(size, Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


class _DecodeRows(Dataset):
    """Row ``i`` as ``(i, pixels or None when it does not decode, label)``, decoded in DataLoader workers."""

    def __init__(self, dataset: datasets.Dataset, max_side: int | None) -> None:
        self.dataset = dataset
        self.max_side = max_side
        self.has_labels = "label" in dataset.column_names

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, int]:
        try:
            row = self.dataset[index]
            pixels = decode(row["image"], self.max_side)
        except Exception:  # a corrupt row (PIL and datasets raise many types): read from the source at use time
            return index, None, _NO_LABEL
        return index, pixels, int(row["label"]) if self.has_labels else _NO_LABEL


def _as_list(rows: list) -> list:
    return rows


def _write(dataset: datasets.Dataset, folder: Path, max_side: int | None, workers: int) -> int:
    """Write ``pixels.u8`` and ``index.npy`` of ``dataset`` into ``folder``; the number of pixel bytes."""
    index = np.zeros((len(dataset), 4), dtype=np.int64)
    offset = 0
    loader = DataLoader(_DecodeRows(dataset, max_side), batch_size=64, num_workers=workers, collate_fn=_as_list)
    with open(folder / "pixels.u8", "wb") as pixels_file:
        for rows in loader:
            for row, pixels, label in rows:
                height, width = pixels.shape[:2] if pixels is not None else (0, 0)
                index[row] = (offset, height, width, label)
                if pixels is not None:
                    pixels_file.write(np.ascontiguousarray(pixels).tobytes())
                    offset += pixels.size
    np.save(folder / "index.npy", index)
    return offset


def build(dataset: datasets.Dataset, entry: Path, expected: dict[str, Any], max_side: int | None, workers: int) -> None:
    """Decode every row of ``dataset`` into ``entry`` (written beside it, then renamed into place)."""
    started = time.perf_counter()
    entry.parent.mkdir(parents=True, exist_ok=True)
    writer = f"{socket.gethostname()}-{os.getpid()}"  # machines sharing a file system build side by side
    temporary = entry.with_name(f"{entry.name}.tmp-{writer}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        offset = _write(dataset, temporary, max_side, workers)
        (temporary / "meta.json").write_text(json.dumps({"fingerprint": expected, "source": origin_of(dataset).name}))
        stale = entry.with_name(f"{entry.name}.old-{writer}")
        if entry.exists():
            entry.rename(stale)
        temporary.rename(entry)
        shutil.rmtree(stale, ignore_errors=True)
    finally:  # an interrupted build leaves nothing behind
        shutil.rmtree(temporary, ignore_errors=True)
    out.print(
        f"decoded-image cache: built {entry} ({len(dataset)} images, {offset / 2**20:.1f} MiB) "
        f"in {time.perf_counter() - started:.1f} s"
    )


class DecodedRows(Dataset):
    """The rows of a source read from its cache entry: ``{"image", "index", "label"}`` like the source's own rows.

    Pickles without its memory maps: each DataLoader worker maps ``index.npy`` and ``pixels.u8`` on its first row. A
    row that did not decode when the cache was built is read from ``source``, which fails or is skipped as
    ``[data] corrupt`` says.
    """

    def __init__(self, entry: Path, source: datasets.Dataset) -> None:
        self.entry = entry
        self.source = source
        self.column_names = source.column_names
        self._index: np.ndarray | None = None
        self._pixels: np.ndarray | None = None
        rows = len(self.index)
        if rows != len(source):
            raise SslcoreError(
                f"decoded-image cache '{entry}' holds {rows} rows, the source {len(source)}",
                where="[data]",
                hint=f"delete '{entry}' to rebuild it",
            )
        set_origin(self, origin_of(source))  # corrupt rows go back to the source, with its messages

    @property
    def index(self) -> np.ndarray:
        """Per row ``(offset, height, width, label)``, memory-mapped."""
        if self._index is None:
            self._index = np.load(self.entry / "index.npy", mmap_mode="r")
        return self._index

    def __len__(self) -> int:
        return len(self.source)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_index": None, "_pixels": None}

    def pixels(self, index: int) -> np.ndarray | None:
        """Row ``index``'s cached HWC uint8 pixels (a read-only view of the map), or None if it did not decode."""
        offset, height, width, _ = (int(x) for x in self.index[index])
        if height == 0:
            return None
        if self._pixels is None:
            self._pixels = np.memmap(self.entry / "pixels.u8", dtype=np.uint8, mode="r")
        return self._pixels[offset : offset + height * width * 3].reshape(height, width, 3)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pixels = self.pixels(index)
        if pixels is None:
            return self.source[index]
        row: dict[str, Any] = {"image": Image.fromarray(pixels), "index": index}
        if "label" in self.column_names:
            row["label"] = int(self.index[index, 3])
        return row

    def with_format(self, *args: Any, **kwargs: Any) -> datasets.Dataset:
        """The source's ``with_format``: messages about a corrupt row read its file path from the source."""
        return self.source.with_format(*args, **kwargs)


def cached_rows(
    dataset: datasets.Dataset, options: Any, accelerator: Accelerator, *, workers: int
) -> datasets.Dataset | DecodedRows:
    """``dataset``, or its rows from the decoded-image cache when the source's options ask for it (building or
    rebuilding the entry first, on the first process of each machine). A collective when it builds: every process
    calls it at the same point."""
    if not isinstance(options, CacheOptions) or options.cache == "none":
        return dataset
    entry = entry_path(dataset, options)
    expected = fingerprint(dataset, options.cache_max_side)
    error: SslcoreError | None = None
    if accelerator.is_local_main_process:
        reason = stale_reason(entry, expected)
        if reason is not None:
            out.print(f"decoded-image cache: building {entry}: {reason}")
            try:
                build(dataset, entry, expected, options.cache_max_side, workers)
            except OSError as failure:
                error = SslcoreError(
                    f"cannot write the decoded-image cache in '{entry.parent}': {failure}",
                    where="[data.cache_dir]",
                    hint="point cache_dir at a writable folder with space",
                )
    raise_first(accelerator, error)  # every process waits here until the entry is in place
    return DecodedRows(entry, dataset)
