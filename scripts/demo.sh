#!/usr/bin/env bash
# One command on a fresh machine: set up .venv, then run the built-in demo (no internet needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
