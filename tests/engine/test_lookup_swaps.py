"""Key stores and losses are swappable by recipe wherever the mathematics allows (the look-up protocol), and a
combination that does not fit is one line naming both tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sslcore.errors import SslcoreError
from sslcore.engine.trainer import train_from_recipe
from sslcore.plugins import PluginHost


def train(recipe: str, tmp_path: Path, *overrides: str) -> list[float]:
    """Three steps of a shipped smoke recipe without evaluation; the logged losses."""
    train_from_recipe(
        recipe, [f"run.output_dir='{tmp_path}'", "run.steps=3", "run.log_every=1", "eval.limit_train=64",
                 "eval.limit_eval=32", *overrides], PluginHost()
    )
    records = [json.loads(line) for line in (tmp_path / recipe / "metrics.jsonl").read_text().splitlines()]
    return [record["loss"] for record in records if "loss" in record]


@pytest.mark.parametrize(
    ("recipe", "store"),
    [
        ("moco_smoke", 'key_store={kind = "in_batch", stop_gradient = true}'),  # MoCo v2 with MoCo v3's keys
        ("simclr_smoke", 'key_store={kind = "queue", size = 64}'),  # SimCLR against a queue of past projections
    ],
)
def test_a_recipe_trains_with_another_key_store(recipe: str, store: str, tmp_path: Path) -> None:
    losses = train(recipe, tmp_path, store)
    assert len(losses) == 3 and all(loss == loss and abs(loss) < 1e3 for loss in losses)
    assert len(set(losses)) > 1  # the swapped store really feeds the loss: it moves


def test_a_combination_that_does_not_fit_is_one_line_naming_both_tables(tmp_path: Path) -> None:
    with pytest.raises(SslcoreError) as raised:
        train("moco_smoke", tmp_path, 'loss={kind = "nce"}')  # NCE needs a memory bank's noise distribution
    message = str(raised.value)
    assert "\n" not in message
    assert "[loss] 'nce'" in message and "[key_store] 'queue'" in message and "population" in message
    assert message.startswith(str(Path(PluginHost().recipes.get("moco_smoke").path)))
