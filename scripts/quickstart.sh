#!/usr/bin/env bash
# The main job: self-supervised pre-training on an embedded dataset (offline), kNN accuracy before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-venv.sh
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1
exec .venv/bin/python -m sslcore.run quickstart "$@"
