"""Collation of views and the evaluation DataLoader."""

from __future__ import annotations

import pickle

import pytest
import torch

from sslcore.data.loaders import RowViews, collate_views, make_eval_loader
from sslcore.data.sources import DigitsSourceConfig, build_digits
from sslcore.data.views import (
    EvalViewsConfig,
    MultiCropViewsConfig,
    build_eval,
    build_multicrop,
)
from sslcore.errors import SslcoreError


@pytest.fixture(scope="module")
def digits():
    return build_digits(DigitsSourceConfig(size=16, train_limit=96), "train")


def test_collate_groups_views_by_position_and_keeps_sizes_apart():
    rows = [
        {"views": [torch.full((3, 8, 8), float(i)), torch.zeros(3, 4, 4)], "index": i, "label": 10 + i}
        for i in range(3)
    ]
    batch = collate_views(rows)
    assert [v.shape for v in batch["views"]] == [(3, 3, 8, 8), (3, 3, 4, 4)]
    assert batch["views"][0][:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]
    assert batch["index"].dtype == torch.long and batch["index"].tolist() == [0, 1, 2]
    assert batch["label"].tolist() == [10, 11, 12]
    unlabeled = collate_views([{"views": [torch.zeros(3, 2, 2)], "index": 5}])
    assert "label" not in unlabeled and unlabeled["index"].tolist() == [5]
    with pytest.raises(ValueError, match="same number of views"):
        collate_views([rows[0], {"views": rows[1]["views"][:1], "index": 1}])
    with pytest.raises(SslcoreError, match="different shapes"):
        collate_views([{"views": [torch.zeros(3, 2, 2)], "index": 0}, {"views": [torch.zeros(3, 2, 3)], "index": 1}])


def test_row_views_rows_and_pickling(digits):
    dataset = RowViews(digits, build_multicrop(MultiCropViewsConfig(global_size=16, local_crops=2)))
    row = dataset[7]
    assert set(row) == {"views", "index", "label"} and row["index"] == 7 and row["label"] == digits[7]["label"]
    assert [v.shape[-1] for v in row["views"]] == [16, 16, 8, 8]
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone[7]["index"] == 7 and len(clone[7]["views"]) == 4


def test_eval_loader_keeps_order_and_every_row(digits):
    loader = make_eval_loader(digits, build_eval(EvalViewsConfig()), batch_size=40, num_workers=0)
    batches = list(loader)
    assert [len(b["index"]) for b in batches] == [40, 40, 16]
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(96))
    assert batches[0]["views"][0].shape == (40, 3, 16, 16)


def test_row_views_require_an_image_column(digits):
    with pytest.raises(SslcoreError, match="no 'image' column"):
        RowViews(digits.remove_columns("image"), build_eval(EvalViewsConfig()))
