#!/usr/bin/env python3
"""The built-in demo: generate a tiny real GGUF, create a model from a Modelfile into a
throw-away store, list and show it. Needs no network.

    .venv/bin/python scripts/demo.py [--workdir DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_tiny_model import write_tiny_gguf  # noqa: E402

MODELFILE = '''FROM ./tiny.gguf
TEMPLATE """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
SYSTEM """You are a demo model with random weights."""
PARAMETER temperature 0.7
PARAMETER stop <|im_end|>
PARAMETER stop <|im_start|>
'''


def step(title: str, *args: str, env: dict[str, str]) -> None:
    print(f"\n$ llmcrate {' '.join(args)}    # {title}", flush=True)
    subprocess.run([sys.executable, "-m", "runtime.cli", *args], env=env, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="llmcrate-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    gguf = write_tiny_gguf(work / "tiny.gguf")
    (work / "Modelfile").write_text(MODELFILE)
    env = dict(os.environ, OLLAMA_MODELS=str(work / "models"), OLLAMA_HOST="127.0.0.1:9",
               PYTHONPATH=str(ROOT))
    print(f"demo workdir: {work}\ngenerated {gguf.name}: {gguf.stat().st_size} bytes")
    os.chdir(work)
    step("create a model from a Modelfile", "create", "demo", "-f", "Modelfile", env=env)
    step("list the store", "list", env=env)
    step("show it", "show", "demo", env=env)
    step("the Modelfile it renders back", "show", "demo", "--modelfile", env=env)
    print(f"\nstore: {work / 'models'}  (Ollama layout: manifests/ and blobs/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
