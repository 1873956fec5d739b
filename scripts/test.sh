#!/usr/bin/env bash
# The test command: set up .venv (if needed) and run the whole suite (unit + e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
