"""``python -m sslcore.run RECIPE [table.key=value ...]``: train from a recipe.

Works under ``accelerate launch -m sslcore.run`` and ``torchrun -m sslcore.run`` as well.
"""

from __future__ import annotations

import sys

from sslcore.cli import main

if __name__ == "__main__":
    main(["run", *sys.argv[1:]])
