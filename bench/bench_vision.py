#!/usr/bin/env python3
"""Time to first token of a chat with one 512x512 image vs the same chat without it.

    .venv/bin/python bench/bench_vision.py [--runs 5] [--threads 2]
        [--model M.gguf --mmproj P.gguf] [--server http://127.0.0.1:11434 --name MODEL]

Direct: llama-cpp-python's low-level API with :class:`runtime.serve.vision.VisionContext` (what the
engine runner does): prefill of the rendered chat prompt into a fresh sequence, then one greedy
token; with the image, the prompt carries it as ``[img-0]`` (tokenize = image decode + resize,
encode = the projector, decode = the embeddings). Without ``--model`` it generates a tiny
language model and a CLIP-sized random projector (336 px, patch 14: 576 embeddings per image,
6 blocks of width 256), so the encode has a realistic shape if not a realistic width.

``--server``: the same two chats through ``/api/chat`` of a running server (a model with a
projector, ``--name``), first streamed chunk timed by the client; the overhead is server TTFT
minus direct TTFT. Prints one table.
"""
from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from make_tiny_model import write_tiny_gguf, write_tiny_mmproj  # noqa: E402

_quiet: Any = None
CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
QUESTION = "What is in this picture? Describe the colours and the shapes you can see."


def picture(size: int = 512) -> bytes:
    """A 512x512 RGB PNG with a red square on a grey field (something to look at)."""
    rows = []
    for y in range(size):
        row = bytearray(b"\x00")
        for x in range(size):
            inside = size // 4 <= x < 3 * size // 4 and size // 4 <= y < 3 * size // 4
            row += b"\xdc\x14\x14" if inside else b"\x80\x80\x80"
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def _silent(_level: int, _text: bytes, _user: Any) -> None:
    pass


def _quiet_callback() -> Any:
    import llama_cpp

    return llama_cpp.llama_log_callback(_silent)


def direct(model_path: Path, mmproj: Path, image: bytes, runs: int, threads: int) -> dict[str, Any]:
    import llama_cpp

    from runtime.serve.vision import VisionContext, split_image_tags

    global _quiet  # noqa: PLW0603
    _quiet = _quiet_callback()       # kept alive: llama.cpp calls it from C
    llama_cpp.llama_log_set(_quiet, None)
    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = 999 if os.environ.get("BENCH_GPU") else 0
    model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), mp)
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = 4096, 512, 512
    cp.n_threads = cp.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model, cp)
    t0 = time.perf_counter()
    vision = VisionContext(mmproj, model, n_threads=threads, use_gpu=bool(os.environ.get("BENCH_GPU")))
    load = time.perf_counter() - t0
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    mem = llama_cpp.llama_get_memory(ctx)
    out: dict[str, Any] = {"projector load": load, "tokens/image": vision.tokens_per_image}
    for label, prompt, images in (("text only", CHATML.format(QUESTION), []),
                                  ("with image", CHATML.format("[img-0]" + QUESTION), [image])):
        times, parts_t = [], []
        n_tokens = 0
        for _ in range(runs + 1):   # the first run warms up (allocations, page cache)
            llama_cpp.llama_memory_clear(mem, True)
            t0 = time.perf_counter()
            with vision.tokenize(split_image_tags(prompt, images)) as p:
                t1 = time.perf_counter()
                r = vision.eval(ctx, p, seq_id=0, n_past=0, n_batch=512)
            llama_cpp.llama_sampler_sample(chain, ctx, -1)
            t2 = time.perf_counter()
            times.append(t2 - t0)
            parts_t.append(t1 - t0)
            n_tokens = r.n_tokens
        out[label] = (statistics.median(times[1:]), statistics.median(parts_t[1:]), n_tokens)
    vision.close()
    llama_cpp.llama_sampler_free(chain)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return out


def through_server(url: str, name: str, image: bytes, runs: int) -> dict[str, float]:
    import httpx

    out = {}
    b64 = base64.b64encode(image).decode()
    for label, msg in (("text only", {"role": "user", "content": QUESTION}),
                       ("with image", {"role": "user", "content": QUESTION, "images": [b64]})):
        times = []
        for _ in range(runs + 1):
            body = {"model": name, "messages": [msg], "stream": True,
                    "options": {"num_predict": 1, "temperature": 0}, "keep_alive": "10m"}
            t0 = time.perf_counter()
            with httpx.stream("POST", f"{url}/api/chat", json=body, timeout=600) as r:
                if r.status_code != 200:
                    r.read()
                    raise SystemExit(f"{label}: HTTP {r.status_code}: {r.text.strip()}")
                for _line in r.iter_lines():
                    break
            times.append(time.perf_counter() - t0)
        out[label] = statistics.median(times[1:])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--mmproj", type=Path)
    ap.add_argument("--server", help="base URL of a running llmcrate serve")
    ap.add_argument("--name", help="the vision model's name on --server")
    a = ap.parse_args()
    image = picture()
    with tempfile.TemporaryDirectory(prefix="bench-vision-") as tmp:
        model, mmproj = a.model, a.mmproj
        if model is None or mmproj is None:
            model = write_tiny_gguf(Path(tmp) / "model.gguf", n_embd=64)
            mmproj = write_tiny_mmproj(Path(tmp) / "mmproj.gguf", text_n_embd=64, image_size=336,
                                       patch_size=14, n_embd=256, n_head=4, n_ff=1024, n_layer=6)
        d = direct(model, mmproj, image, a.runs, a.threads)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{now}; threads {a.threads}, runs {a.runs} (median, after one warm-up)")
    print(f"image: 512x512 PNG ({len(image)} bytes) -> {d['tokens/image']} embeddings; "
          f"projector load {d['projector load'] * 1000:.0f} ms")
    for label in ("text only", "with image"):
        ttft, tok, n = d[label]
        print(f"direct  {label:<11} TTFT {ttft * 1000:8.1f} ms  (tokenize {tok * 1000:6.1f} ms, "
              f"{n} prompt tokens)")
    image_cost = d["with image"][0] - d["text only"][0]
    print(f"direct  image cost      {image_cost * 1000:8.1f} ms")
    if a.server:
        s = through_server(a.server.rstrip("/"), a.name or "", image, a.runs)
        for label in ("text only", "with image"):
            print(f"server  {label:<11} TTFT {s[label] * 1000:8.1f} ms  "
                  f"(overhead {(s[label] - d[label][0]) * 1000:+.1f} ms)")
        extra = (s["with image"] - d["with image"][0]) - (s["text only"] - d["text only"][0])
        print(f"server overhead of the image: {extra * 1000:+.1f} ms = "
              f"{100 * extra / image_cost:.1f} % of the image cost (goal < 5 %)")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
