"""Packaging and start-up: every pyproject.toml declares its licence as an SPDX expression (no setuptools
deprecation warning at install), and the ``sslcore`` command starts without importing torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECTS = [ROOT / "pyproject.toml", *sorted(ROOT.glob("plugins/*/pyproject.toml"))]


@pytest.mark.parametrize("path", PYPROJECTS, ids=lambda path: path.parent.name)
def test_the_license_is_an_spdx_string_and_setuptools_supports_it(path: Path) -> None:
    document = tomllib.loads(path.read_text())
    assert document["project"]["license"] == "Apache-2.0"  # a table ({ text = ... }) is deprecated by setuptools 77
    setuptools = next(Requirement(r) for r in document["build-system"]["requires"] if r.startswith("setuptools"))
    assert "76.9" not in setuptools.specifier and "77.0" in setuptools.specifier  # PEP 639 strings: setuptools >= 77


def test_the_command_line_starts_without_torch() -> None:
    code = "import sys; from sslcore.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_public_names_still_import_from_sslcore() -> None:
    import sslcore
    from sslcore.method import Method

    assert sslcore.Method is Method and set(sslcore.__all__) <= set(dir(sslcore))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        sslcore.Nope  # noqa: B018
