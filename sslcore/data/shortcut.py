"""``sslcore run --data DIR``: pre-train on a folder of unlabelled images without writing a recipe.

``--data DIR`` stands for the overrides ``data.kind=images data.path=DIR eval=none`` (every image file below DIR, in
any layout; no evaluation, which needs labels), put before the command line's own so that those can change them.
Without a recipe it trains :data:`DEFAULT_RECIPE` (sslcore's ``quickstart``: SimCLR on a ResNet-18 at 32 px; set
``views.size=224`` for photographs).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from sslcore.errors import SslcoreError

DEFAULT_RECIPE = "quickstart"


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """``RECIPE`` optional and ``--data DIR`` on a ``run`` / ``check`` parser."""
    parser.add_argument(
        "--data",
        metavar="DIR",
        help=f"train on every image file below DIR (any layout, no labels); the recipe defaults to {DEFAULT_RECIPE}",
    )


def recipe_and_overrides(recipe: str | None, overrides: Sequence[str], data: str | None) -> tuple[str, list[str]]:
    """The recipe to resolve and the overrides, ``--data``'s first. A first override taken for the recipe by the
    parser (``sslcore run --data DIR run.steps=10``) goes back among the overrides."""
    overrides = list(overrides)
    if recipe is not None and "=" in recipe and not Path(recipe).is_file():
        overrides.insert(0, recipe)
        recipe = None
    if data is None:
        if recipe is None:
            raise SslcoreError("no recipe given", hint="name a recipe (`sslcore recipes` lists them) or use --data DIR")
        return recipe, overrides
    if not Path(data).expanduser().is_dir():
        raise SslcoreError(f"--data {data}: no such folder", hint="give a folder of images")
    return recipe or DEFAULT_RECIPE, ["data.kind=images", f"data.path={json.dumps(data)}", "eval=none", *overrides]
