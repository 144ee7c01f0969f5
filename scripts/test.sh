#!/usr/bin/env bash
# The test suite (unit, distributed gloo, end-to-end). Extra arguments go to pytest, e.g. -m "not slow".
# Two pytest workers (SSLCORE_TEST_WORKERS, 0 for none), each taking whole test files (a file's tests share fixtures
# and folders), with one torch thread each, so that the two cores stay busy while a test waits for a subprocess.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-venv.sh
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
workers=${SSLCORE_TEST_WORKERS:-2}
if [ "$workers" = 0 ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
exec .venv/bin/python -m pytest -q -n "$workers" --dist loadfile "$@"
