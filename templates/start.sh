#!/bin/sh
# Start the llmcrate server of {{ top }}: pick the llama.cpp runtime for this host, then exec
# `llmcrate serve`. Chosen again at every start: NVIDIA (driver new enough) -> cuda, AMD ROCm
# (/dev/kfd, supported gfx) -> rocm, else cpu. LLMCRATE_RUNTIME=cpu|cuda|rocm forces one; a GPU
# runtime that fails to load falls back to cpu, and the reason is logged.
set -eu
LIB=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
. "$LIB/install.conf"

# Outside systemd, read the settings file too; variables already set win over it.
if [ -z "${INVOCATION_ID:-}" ] && [ -r "$ETC_DIR/llmcrate.env" ]; then
    _h=${OLLAMA_HOST-} _hs=${OLLAMA_HOST+x}
    _m=${OLLAMA_MODELS-} _ms=${OLLAMA_MODELS+x}
    _r=${LLMCRATE_RUNTIME-} _rs=${LLMCRATE_RUNTIME+x}
    set -a
    . "$ETC_DIR/llmcrate.env"
    set +a
    if [ -n "$_hs" ]; then OLLAMA_HOST=$_h; fi
    if [ -n "$_ms" ]; then OLLAMA_MODELS=$_m; fi
    if [ -n "$_rs" ]; then LLMCRATE_RUNTIME=$_r; fi
fi
: "${OLLAMA_MODELS:=$MODELS_DIR}"
export OLLAMA_MODELS

export PYTHONPATH="$LIB/python"
CHOICE=$("$PYTHON" -s -m runtime.serve.hardware select --runtimes "$LIB/runtimes" --bundle-json "$LIB/bundle.json") \
    || { echo "llmcrate: could not choose a runtime" >&2; exit 1; }
RT_NAME=$(printf '%s' "$CHOICE" | cut -f1)
RT_DIR=$(printf '%s' "$CHOICE" | cut -f2-)
export LLAMA_CPP_LIB_PATH="$RT_DIR"
export MTMD_CPP_LIB="$RT_DIR"
export LD_LIBRARY_PATH="$RT_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LLMCRATE_ACTIVE_RUNTIME="$RT_NAME"
echo "llmcrate: {{ top }}: serving with the $RT_NAME runtime ($RT_DIR)" >&2
# the server itself never loads llama.cpp: each model's runner process registers the ggml
# backends of LLAMA_CPP_LIB_PATH before it loads its model
exec "$PYTHON" -s -c 'from runtime.cli import main
main(prog_name="llmcrate")' serve
