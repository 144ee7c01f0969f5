"""Dataset sources: each kind loads, standardizes its columns and reports mistakes clearly."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sklearn.datasets
from PIL import Image

from sslcore.data.source_configs import sslcore_register_datasets
from sslcore.data.sources import (
    DigitsSourceConfig,
    HubSourceConfig,
    ImageFolderSourceConfig,
    ParquetSourceConfig,
    SavedSourceConfig,
    build_digits,
    build_hub,
    build_image_folder,
    build_parquet,
    build_saved,
)
from sslcore.errors import SslcoreError
from sslcore.registry import Registry

CIFAR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10"


def _image(seed: int, size: int = 12) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    _image(seed).save(buffer, format="PNG")
    return buffer.getvalue()


def _check_standard(ds: datasets.Dataset, n: int, labeled: bool = True) -> None:
    assert len(ds) == n
    assert ds.column_names == (["image", "label", "index"] if labeled else ["image", "index"])
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds["index"][:] == list(range(n))
    assert isinstance(ds[0]["image"], Image.Image)


def _hf_dataset(n: int, image_column: str = "image") -> datasets.Dataset:
    data = {image_column: [_image(i) for i in range(n)], "label": [i % 3 for i in range(n)], "extra": list(range(n))}
    int64 = datasets.Value("int64")
    features = datasets.Features({image_column: datasets.Image(), "label": int64, "extra": int64})
    return datasets.Dataset.from_dict(data, features=features)


def test_all_sources_are_registered():
    registry = Registry("dataset")
    sslcore_register_datasets(registry)
    assert registry.names() == ["digits", "hub", "image_folder", "images", "parquet", "saved"]
    assert registry.get("parquet").config is ParquetSourceConfig


def test_digits_split_is_fixed_stratified_and_complete():
    train = build_digits(DigitsSourceConfig(), "train")
    test = build_digits(DigitsSourceConfig(), "test")
    _check_standard(train, 1437)
    _check_standard(test, 360)
    assert train[0]["image"].size == (32, 32) and train[0]["image"].mode == "RGB"
    counts = Counter(train["label"][:]) + Counter(test["label"][:])
    assert counts == Counter(sklearn.datasets.load_digits().target.tolist())  # the two splits partition the set
    assert all(c >= 35 for c in Counter(test["label"][:]).values())  # stratified: every digit ~36 times
    again = build_digits(DigitsSourceConfig(), "test")
    assert again["label"][:] == test["label"][:]
    assert np.array_equal(np.asarray(again[5]["image"]), np.asarray(test[5]["image"]))


def test_digits_options():
    small = build_digits(DigitsSourceConfig(size=16, labels=False, train_limit=100), "train")
    _check_standard(small, 100, labeled=False)
    assert small[0]["image"].size == (16, 16)
    with pytest.raises(SslcoreError, match="unknown split 'validation'"):
        build_digits(DigitsSourceConfig(), "validation")


def test_parquet_file_folder_and_glob(tmp_path):
    _hf_dataset(10).to_parquet(str(tmp_path / "train.parquet"))
    _hf_dataset(4).to_parquet(str(tmp_path / "test.parquet"))
    config = ParquetSourceConfig(
        train=str(tmp_path / "train.parquet"), test=str(tmp_path / "te*.parquet"), train_limit=6
    )
    train = build_parquet(config, "train")
    _check_standard(train, 6)
    assert train["label"][:] == [0, 1, 2, 0, 1, 2]
    assert np.array_equal(np.asarray(train[3]["image"]), np.asarray(_image(3)))
    _check_standard(build_parquet(config, "test"), 4)
    shards = tmp_path / "shards"
    shards.mkdir()
    _hf_dataset(3).to_parquet(str(shards / "a.parquet"))
    _hf_dataset(2).to_parquet(str(shards / "b.parquet"))
    _check_standard(build_parquet(ParquetSourceConfig(train=str(shards)), "train"), 5)


def test_parquet_without_hf_metadata_casts_bytes_and_encodes_string_labels(tmp_path):
    table = pa.table({"png": [_png_bytes(i) for i in range(4)], "cls": ["dog", "cat", "dog", "ant"]})
    pq.write_table(table, tmp_path / "raw.parquet")
    config = ParquetSourceConfig(train=str(tmp_path / "raw.parquet"), image_column="png", label_column="cls")
    ds = build_parquet(config, "train")
    _check_standard(ds, 4)
    assert ds["label"][:] == [2, 1, 2, 0]  # class ids in sorted name order: ant, cat, dog
    assert ds.features["label"].names == ["ant", "cat", "dog"]
    assert np.array_equal(np.asarray(ds[1]["image"]), np.asarray(_image(1)))


def test_parquet_errors_name_the_path_and_the_columns(tmp_path):
    with pytest.raises(SslcoreError, match="no such file or folder '.*missing.parquet'"):
        build_parquet(ParquetSourceConfig(train=str(tmp_path / "missing.parquet")), "train")
    with pytest.raises(SslcoreError, match="no .parquet files"):
        build_parquet(ParquetSourceConfig(train=str(tmp_path / "*.parquet")), "train")
    _hf_dataset(3).to_parquet(str(tmp_path / "d.parquet"))
    with pytest.raises(SslcoreError, match=r"no label column 'target' \(columns: image, label, extra\)"):
        build_parquet(ParquetSourceConfig(train=str(tmp_path / "d.parquet"), label_column="target"), "train")
    with pytest.raises(SslcoreError, match=r"no image column 'img' \(columns: image, label, extra\)"):
        build_parquet(ParquetSourceConfig(train=str(tmp_path / "d.parquet"), image_column="img"), "train")
    with pytest.raises(SslcoreError, match="does not hold images"):
        build_parquet(ParquetSourceConfig(train=str(tmp_path / "d.parquet"), image_column="extra"), "train")
    with pytest.raises(SslcoreError, match="has no test split"):
        build_parquet(ParquetSourceConfig(train=str(tmp_path / "d.parquet")), "test")
    unlabeled = build_parquet(ParquetSourceConfig(train=str(tmp_path / "d.parquet"), labels=False), "train")
    _check_standard(unlabeled, 3, labeled=False)


@pytest.mark.skipif(not CIFAR.is_dir(), reason=f"CIFAR-10 parquet files not found at {CIFAR} (../shared/data)")
def test_cifar10_parquet():
    config = ParquetSourceConfig(train=str(CIFAR / "train.parquet"), test=str(CIFAR / "test.parquet"), train_limit=500)
    train = build_parquet(config, "train")
    test = build_parquet(config, "test")
    _check_standard(train, 500)
    _check_standard(test, 10_000)
    assert train.features["label"].names[:3] == ["airplane", "automobile", "bird"]
    image = train[0]["image"]
    assert image.size == (32, 32) and image.mode == "RGB"
    assert len(set(train["label"][:])) == 10  # shuffled rows: a prefix holds every class


def test_hub_layout_folder_and_offline_errors(tmp_path):
    data = tmp_path / "hub" / "data"
    data.mkdir(parents=True)
    _hf_dataset(6, image_column="img").to_parquet(str(data / "train-00000-of-00001.parquet"))
    _hf_dataset(3, image_column="img").to_parquet(str(data / "test-00000-of-00001.parquet"))
    config = HubSourceConfig(path=str(tmp_path / "hub"), image_column="img", test_limit=2)
    _check_standard(build_hub(config, "train"), 6)
    _check_standard(build_hub(config, "test"), 2)
    with pytest.raises(SslcoreError, match="hub dataset .*validation"):
        build_hub(HubSourceConfig(path=str(tmp_path / "hub"), image_column="img", test_split="validation"), "test")
    with pytest.raises(SslcoreError, match="cannot load hub dataset 'nobody-xyz/no-such-set'.*HuggingFace cache"):
        build_hub(HubSourceConfig(path="nobody-xyz/no-such-set"), "train")


def test_image_folder_labels_from_subfolders(tmp_path):
    for split, per_class in (("train", 3), ("test", 1)):
        for name in ("cat", "dog"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                _image(i).save(folder / f"{i}.png")
    config = ImageFolderSourceConfig(train=str(tmp_path / "train"), test=str(tmp_path / "test"))
    train = build_image_folder(config, "train")
    _check_standard(train, 6)
    assert train.features["label"].names == ["cat", "dog"]
    assert sorted(train["label"][:]) == [0, 0, 0, 1, 1, 1]
    _check_standard(build_image_folder(config, "test"), 2)
    with pytest.raises(SslcoreError, match="no such folder '.*nowhere'"):
        build_image_folder(ImageFolderSourceConfig(train=str(tmp_path / "nowhere")), "train")


def test_image_folder_unlabeled(tmp_path):
    for i in range(3):
        _image(i).convert("L").save(tmp_path / f"{i}.png")
    ds = build_image_folder(ImageFolderSourceConfig(train=str(tmp_path), labels=False), "train")
    _check_standard(ds, 3, labeled=False)


def test_saved_dataset_dict_and_single_dataset(tmp_path):
    datasets.DatasetDict(train=_hf_dataset(5), test=_hf_dataset(2)).save_to_disk(str(tmp_path / "dict"))
    config = SavedSourceConfig(path=str(tmp_path / "dict"))
    _check_standard(build_saved(config, "train"), 5)
    _check_standard(build_saved(config, "test"), 2)
    with pytest.raises(SslcoreError, match=r"no test split named 'val' \(splits: train, test\)"):
        build_saved(SavedSourceConfig(path=str(tmp_path / "dict"), test_split="val"), "test")
    _hf_dataset(4).save_to_disk(str(tmp_path / "single"))
    _check_standard(build_saved(SavedSourceConfig(path=str(tmp_path / "single")), "train"), 4)
    with pytest.raises(SslcoreError, match="single dataset"):
        build_saved(SavedSourceConfig(path=str(tmp_path / "single")), "test")
    with pytest.raises(SslcoreError, match="no such folder"):
        build_saved(SavedSourceConfig(path=str(tmp_path / "absent")), "train")
