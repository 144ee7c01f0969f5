"""Fixtures for engine tests: the test method plugin installed as a fake distribution; one intra-op thread."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sslcore.testing import single_thread

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def one_thread():
    """Runs in the test process use one intra-op thread, as the subprocess runs do (OMP_NUM_THREADS=1): small
    networks gain nothing from more, and spinning threads slow to a crawl when parallel test runs share the CPU."""
    with single_thread():
        yield


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """Environment whose PYTHONPATH holds the test method plugin as an installed distribution."""
    site = tmp_path / "site"
    dist = site / "sslcore_engine_test-0.1.dist-info"
    dist.mkdir(parents=True)
    shutil.copy(HERE / "engine_test_plugin.py", site / "engine_test_plugin.py")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sslcore-engine-test\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[sslcore]\npairwise = engine_test_plugin\n")
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return env
