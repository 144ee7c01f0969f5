"""The decoded-image cache (``[data] cache = "decoded"``): the source's pixels, reused while the source is unchanged,
rebuilt when it changes, corrupt rows left to the source. Runs with the cache are in tests/engine."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sslcore.data.decoded_cache import DecodedRows, cached_rows, decode
from sslcore.data.image_files import ImagesSourceConfig, build_images
from sslcore.data.rows import read_row
from sslcore.data.sources import DigitsSourceConfig, build_digits
from sslcore.errors import SslcoreError

#: The one process of a run, as :func:`cached_rows` sees it.
ONE_PROCESS = SimpleNamespace(is_local_main_process=True, num_processes=1)
SIZES = [(20, 12), (7, 30), (16, 16), (33, 9)]  # (width, height): images of different sizes and aspect ratios


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir()
    for i, (width, height) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (5, 5), dtype=np.uint8), "L").save(root / "grey.png")  # converted to RGB
    return root


def _cache(config, build):
    source = build(config, "train")
    return source, cached_rows(source, config, ONE_PROCESS, workers=0)


def test_without_the_option_the_source_is_read_as_before(tmp_path):
    config = DigitsSourceConfig(train_limit=8, cache_dir=str(tmp_path))
    source, rows = _cache(config, build_digits)
    assert rows is source and not list(tmp_path.iterdir())


def test_the_cache_holds_the_pixels_and_labels_of_the_decoded_source(tmp_path, capsys):
    config = DigitsSourceConfig(train_limit=24, cache="decoded", cache_dir=str(tmp_path / "cache"))
    source, rows = _cache(config, build_digits)
    assert isinstance(rows, DecodedRows) and len(rows) == 24 and rows.column_names == source.column_names
    for i in range(24):
        cached, original = rows[i], source[i]
        assert np.array_equal(np.asarray(cached["image"]), np.asarray(original["image"].convert("RGB"))), i
        assert cached["label"] == original["label"] and cached["index"] == i
    assert "decoded-image cache: building" in capsys.readouterr().out


def test_images_of_different_sizes_and_the_maximum_side(tmp_path):
    folder = _folder(tmp_path / "images")
    full = ImagesSourceConfig(path=str(folder), cache="decoded", cache_dir=str(tmp_path / "cache"))
    source, rows = _cache(full, build_images)
    assert "label" not in rows[0]
    for i in range(len(source)):
        assert np.array_equal(rows.pixels(i), np.asarray(source[i]["image"].convert("RGB"))), i
    small = ImagesSourceConfig(path=str(folder), cache="decoded", cache_dir=str(tmp_path / "cache"), cache_max_side=10)
    _, shrunk = _cache(small, build_images)
    shapes = [shrunk.pixels(i).shape for i in range(len(source))]
    assert shapes == [(6, 10, 3), (10, 2, 3), (10, 10, 3), (3, 10, 3), (5, 5, 3)]  # sorted paths: 0..3, grey
    assert np.array_equal(shrunk.pixels(4), rows.pixels(4))  # smaller than the maximum side: kept as it is
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one entry per maximum side


def test_a_second_use_reuses_the_entry_and_workers_map_it_themselves(tmp_path, capsys):
    config = DigitsSourceConfig(train_limit=16, cache="decoded", cache_dir=str(tmp_path))
    _, first = _cache(config, build_digits)
    capsys.readouterr()
    written = (first.entry / "meta.json").stat().st_mtime_ns
    _, second = _cache(config, build_digits)
    assert second.entry == first.entry and (second.entry / "meta.json").stat().st_mtime_ns == written
    assert "decoded-image cache" not in capsys.readouterr().out
    second.pixels(0)
    state = second.__getstate__()
    assert second._pixels is not None and state["_pixels"] is None and state["_index"] is None  # a worker maps its own


def test_a_changed_source_rebuilds_the_entry_and_says_why(tmp_path, capsys):
    folder = _folder(tmp_path / "images")
    config = ImagesSourceConfig(path=str(folder), cache="decoded", cache_dir=str(tmp_path / "cache"))
    _cache(config, build_images)
    capsys.readouterr()
    replacement = np.full((4, 9, 3), 77, dtype=np.uint8)
    Image.fromarray(replacement).save(folder / "1.png")
    os.utime(folder / "1.png", ns=(1, 1))  # a new modification time even on a coarse clock
    _, rows = _cache(config, build_images)
    said = capsys.readouterr().out
    assert f"'{folder / '1.png'}' changed since it was cached" in said and "built" in said
    assert np.array_equal(rows.pixels(1), replacement)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [rows.entry.name]  # replaced, nothing left over


def test_a_different_row_count_is_its_own_entry(tmp_path):
    entries = {
        _cache(DigitsSourceConfig(train_limit=n, cache="decoded", cache_dir=str(tmp_path)), build_digits)[1].entry
        for n in (8, 12)
    }
    assert len(entries) == 2


def test_a_corrupt_row_is_read_from_the_source_and_skipped_as_without_the_cache(tmp_path):
    folder = _folder(tmp_path / "images")
    (folder / "2.png").write_bytes(b"not a png")
    config = ImagesSourceConfig(path=str(folder), cache="decoded", cache_dir=str(tmp_path / "cache"), corrupt="skip")
    source, rows = _cache(config, build_images)
    assert rows.pixels(2) is None and rows.pixels(3) is not None
    row, read = read_row(rows, 2, warn=False)
    assert read == 3 and np.array_equal(np.asarray(row["image"]), np.asarray(source[3]["image"].convert("RGB")))


@pytest.mark.parametrize("max_side", [None, 8])
def test_decode_keeps_the_aspect_ratio(max_side):
    image = Image.new("RGB", (40, 10), (1, 2, 3))
    assert decode(image, max_side).shape == ((10, 40, 3) if max_side is None else (2, 8, 3))


def test_a_cache_dir_that_cannot_be_written_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    config = DigitsSourceConfig(train_limit=8, cache="decoded", cache_dir=str(tmp_path / "file" / "cache"))
    with pytest.raises(SslcoreError, match=r"^\[data.cache_dir\]: cannot write the decoded-image cache in .*; point"):
        _cache(config, build_digits)
