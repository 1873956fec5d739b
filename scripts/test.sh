#!/usr/bin/env bash
# The test command: set up .venv (if needed) and run the whole suite (unit + e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# In parallel (pytest-xdist): one worker per core; tests sharing an expensive session fixture
# (the built demo bundle) stay on one worker (tests/conftest.py). LLMCRATE_TEST_WORKERS=0 runs
# everything in this process.
exec .venv/bin/python -m pytest -q -n "${LLMCRATE_TEST_WORKERS:-auto}" --dist loadgroup "$@"
