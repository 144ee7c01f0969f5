#!/usr/bin/env bash
# Create .venv (if missing) and install sslcore, its test tools, the TensorBoard and W&B trackers (tested) and every
# plugin in plugins/ into it.
# Re-installs only when a pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.sslcore-installed
digest=$(cat pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
    echo "installing sslcore and its plugins into .venv (first time: a few minutes, torch is large)" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    editable=()
    for plugin in plugins/*/; do editable+=(-e "$plugin"); done
    .venv/bin/python -m pip install -q -e ".[test,tensorboard,wandb]" "${editable[@]}"
    echo "$digest" > "$stamp"
fi
