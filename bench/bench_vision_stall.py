#!/usr/bin/env python3
"""How long a text stream stalls while image prompts arrive beside it (one runner, two slots).

    .venv/bin/python bench/bench_vision_stall.py [--baseline REV] [--images 6] [--threads 2]

Generates the models of ``bench_vision.py`` (a tiny language model and a random CLIP-shaped
projector: 336 px, patch 14, 576 embeddings per image), stores them as one model, and starts
``llmcrate serve`` (``OLLAMA_NUM_PARALLEL=2``) of this tree and, with ``--baseline``, of an older
commit (``git archive``), one after the other. For each: one client streams a long greedy text
reply while another sends ``--images`` image chats one after another; the text stream's gaps
between chunks are recorded. Prints, per tree, the text stream's median gap, its longest gap,
the 99th percentile, and the image chats' median time to first token.
"""
from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))
from bench_runners import free_port, wait_http  # noqa: E402
from bench_vision import picture  # noqa: E402
from make_tiny_model import write_tiny_gguf, write_tiny_mmproj  # noqa: E402

CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def store_model(models: Path, model: Path, mmproj: Path) -> None:
    from runtime.models.create import CreateRequest, create_from_request
    from runtime.models.store import Store

    store = Store(models)
    files = {p.name: store.add_blob_file(p).digest for p in (model, mmproj)}
    create_from_request(store, "eyes", CreateRequest(files=files))


def measure(tree: Path, models: Path, image: bytes, n_images: int, threads: int) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(models),
               OLLAMA_NUM_PARALLEL="2", OLLAMA_KEEP_ALIVE="-1", PYTHONPATH=str(tree),
               LLMCRATE_NUM_THREAD=str(threads))
    proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "serve"], env=env, cwd=tree,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(url + "/", proc)
        opts = {"temperature": 0, "seed": 1, "num_ctx": 2048}
        b64 = base64.b64encode(image).decode()
        chat = {"model": "eyes", "stream": True, "keep_alive": "-1",
                "messages": [{"role": "user", "content": "What is in this picture?", "images": [b64]}],
                "options": {**opts, "num_predict": 1}}
        with httpx.stream("POST", f"{url}/api/chat", json=chat, timeout=600) as r:   # load, warm
            r.read()
        gaps: list[float] = []
        stop = threading.Event()

        def text() -> None:
            body = {"model": "eyes", "prompt": CHATML.format("Count slowly."), "raw": True,
                    "stream": True, "options": {**opts, "num_predict": 1_000_000}}
            with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=600) as r:
                last = None
                for _ in r.iter_lines():
                    now = time.perf_counter()
                    if last is not None:
                        gaps.append(now - last)
                    last = now
                    if stop.is_set():
                        break

        streamer = threading.Thread(target=text)
        streamer.start()
        time.sleep(1.0)                       # the text stream is under way
        ttfts = []
        for _ in range(n_images):
            t0 = time.perf_counter()
            with httpx.stream("POST", f"{url}/api/chat", json=chat, timeout=600) as r:
                for _line in r.iter_lines():
                    ttfts.append(time.perf_counter() - t0)
                    break
            time.sleep(0.2)
        stop.set()
        streamer.join()
        gaps.sort()
        return {"median gap": statistics.median(gaps), "p99 gap": gaps[int(len(gaps) * 0.99)],
                "max gap": gaps[-1], "image ttft": statistics.median(ttfts), "chunks": len(gaps)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", help="also run llmcrate serve of this git revision")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    image = picture()
    with tempfile.TemporaryDirectory(prefix="bench-vision-stall-") as tmp:
        work = Path(tmp)
        model = write_tiny_gguf(work / "model.gguf", n_embd=64)
        mmproj = write_tiny_mmproj(work / "mmproj.gguf", text_n_embd=64, image_size=336,
                                   patch_size=14, n_embd=256, n_head=4, n_ff=1024, n_layer=6)
        trees = [("this tree", ROOT)]
        if a.baseline:
            old = work / "baseline"
            old.mkdir()
            subprocess.run(f"git -C {ROOT} archive {a.baseline} | tar -x -C {old}", shell=True,
                           check=True)
            trees.append((f"llmcrate@{a.baseline[:7]}", old))
        rows = []
        for name, tree in trees:
            models = work / f"models-{len(rows)}"
            store_model(models, model, mmproj)
            rows.append((name, measure(tree, models, image, a.images, a.threads)))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{now}; threads {a.threads}; {a.images} image chats (512x512 PNG -> 576 embeddings) "
          "beside one streamed text reply, NUM_PARALLEL=2")
    print("| server | text: median gap | p99 gap | longest gap | image TTFT (median) | chunks |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['median gap'] * 1000:.2f} ms | {r['p99 gap'] * 1000:.1f} ms | "
              f"{r['max gap'] * 1000:.1f} ms | {r['image ttft'] * 1000:.0f} ms | {r['chunks']} |")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
