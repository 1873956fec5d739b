#!/usr/bin/env bash
# Create .venv and install llmcrate with its test extras. Idempotent; safe to re-run.
# llama-cpp-python is compiled from source the first time (about 8 minutes on 2 cores);
# pip's wheel cache makes later runs fast.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
.venv/bin/python -m pip install -q -e '.[test]'
