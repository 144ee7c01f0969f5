"""Run by ``accelerate launch`` in tests/engine/test_decoded_cache_runs.py: each process opens the decoded-image cache
of 48 digits and writes what it read to ``OUT/rank<r>.json``. Usage: ``decoded_cache_ranks.py CACHE_DIR OUT``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from accelerate import Accelerator

from sslcore.data.decoded_cache import DecodedRows, cached_rows
from sslcore.data.sources import DigitsSourceConfig, build_digits

cache_dir, out = sys.argv[1], Path(sys.argv[2])
accelerator = Accelerator(cpu=True)
config = DigitsSourceConfig(train_limit=48, cache="decoded", cache_dir=cache_dir)
source = build_digits(config, "train")
rows = cached_rows(source, config, accelerator, workers=0)
same = isinstance(rows, DecodedRows) and all(
    np.array_equal(rows.pixels(i), np.asarray(source[i]["image"].convert("RGB"))) for i in range(len(source))
)
result = {
    "rank": accelerator.process_index,
    "processes": accelerator.num_processes,
    "entry": str(rows.entry),
    "same_pixels": same,
}
(out / f"rank{accelerator.process_index}.json").write_text(json.dumps(result))
accelerator.wait_for_everyone()
