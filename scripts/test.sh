#!/usr/bin/env bash
# The test command: set up .venv (if needed) and run the whole suite (unit + e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The lint and type gate (rules and the reasons for each deviation: pyproject.toml).
.venv/bin/ruff check --quiet .
.venv/bin/mypy
# In parallel (pytest-xdist): one worker per core; tests sharing an expensive session fixture
# (the built demo bundle) stay on one worker (tests/conftest.py). LLMCRATE_TEST_WORKERS=0 runs
# everything in this process.
exec .venv/bin/python -m pytest -q -n "${LLMCRATE_TEST_WORKERS:-auto}" --dist loadgroup "$@"
