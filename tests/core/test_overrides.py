"""Overrides that change a recipe's shape: ``TABLE=none`` removes a table, a ``kind`` switch drops the old kind's
keys with a note."""

from __future__ import annotations

import pytest

from sslcore.recipe import apply_overrides


def _document() -> dict:
    return {
        "run": {"steps": 2},
        "optimizer": {"kind": "sgd", "base_lr": 0.5, "momentum": 0.9, "lr_scaling": "linear"},
        "data": {"kind": "digits", "size": 16, "train_limit": 100},
        "heads": {"projector": {"kind": "mlp"}, "predictor": {"kind": "mlp"}},
        "eval": {"kind": "knn", "k": 20},
    }


def test_table_none_removes_the_table_and_a_missing_top_level_table_stays_absent() -> None:
    document = _document()
    apply_overrides(document, ["eval=none", "heads.predictor=none", "schedule=none"], "r.toml")
    assert "eval" not in document and "schedule" not in document
    assert document["heads"] == {"projector": {"kind": "mlp"}}


def test_none_on_a_key_that_is_not_a_table_is_the_string() -> None:
    document = _document()
    apply_overrides(document, ["optimizer.lr_scaling=none"], "r.toml")
    assert document["optimizer"]["lr_scaling"] == "none"


def test_a_kind_switch_drops_the_old_kinds_keys_with_a_note_and_keeps_the_overrides(capsys) -> None:
    document = _document()
    apply_overrides(document, ["data.train_limit=5", "data.kind=images", "data.path=imgs"], "r.toml")
    assert document["data"] == {"kind": "images", "train_limit": 5, "path": "imgs"}
    assert capsys.readouterr().err.strip() == (
        "note: data.kind switched from 'digits' to 'images': dropped the old kind's keys data.size"
    )


@pytest.mark.parametrize("override", ["data.kind=digits", "optimizer.kind=adamw"])
def test_the_same_kind_or_a_settings_tables_kind_keeps_every_key(override: str, capsys) -> None:
    document = _document()
    apply_overrides(document, [override], "r.toml")
    table = override.split(".")[0]
    assert set(document[table]) == set(_document()[table]) and capsys.readouterr().err == ""
