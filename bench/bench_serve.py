#!/usr/bin/env python3
"""Benchmark: ``llmcrate serve`` (``/api/generate``) against calling llama-cpp-python directly.

    .venv/bin/python bench/bench_serve.py [--runs 9] [--num-predict 128] [--size 256M] [--workdir DIR]

One generated llama GGUF (n_embd 512, 8 layers, float32, ``--size`` sets the feed-forward width),
the same options on both sides (greedy: temperature 0, fixed seed, same num_predict, num_ctx,
num_batch, num_thread and sampler settings) and the same prompts, which differ per run so no
run reuses another's KV cache. Both sides are timed from the caller: time to first token (TTFT)
and decode tokens/s (tokens after the first / time after the first). Direct and served runs
alternate so background load hits both alike. Then aggregate tokens/s (all tokens / wall time,
best of three) with 1, 2 and 4 concurrent clients (OLLAMA_NUM_PARALLEL=4), and the server's
RSS idle, with the model loaded, and after the runs (RSS and PSS). Last, the per-request overhead:
TTFT of a 16-token request on a ~1 MB model, where generation takes about a millisecond. Prints a
markdown block for docs/benchmarks.md. On a shared machine the median moves with other load; the
best run is the closer estimate of each path's cost.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
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
sys.path.insert(0, str(ROOT / "scripts"))
from make_tiny_model import parse_size, write_tiny_gguf  # noqa: E402

MODEL = "bench:latest"
TINY = "tiny:latest"      # a ~1 MB model: its TTFT is almost all per-request overhead
PROMPT = ("Run {i}. The quick brown fox jumps over the lazy dog while the weather report says "
          "that tomorrow will be sunny with a light breeze from the west and")


def options(args: argparse.Namespace) -> dict[str, Any]:
    """Ollama options; :func:`direct_kwargs` gives llama-cpp-python the same values."""
    return {"temperature": 0.0, "seed": 42, "num_predict": args.num_predict, "num_ctx": 2048,
            "num_batch": 512, "num_thread": args.threads, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
            "typical_p": 1.0, "repeat_penalty": 1.1, "repeat_last_n": 64,
            "presence_penalty": 0.0, "frequency_penalty": 0.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB. RSS counts a file mapped by N contexts N times; PSS shares it out."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def mib(kib: tuple[int, int]) -> str:
    return f"{kib[0] / 1024:.0f} MiB RSS / {kib[1] / 1024:.0f} MiB PSS"


def make_store(models: Path, ggufs: dict[str, Path]) -> None:
    from runtime.models.create import CreateRequest, create_from_request
    from runtime.models.store import Store

    store = Store(models)
    for name, gguf in ggufs.items():
        layer = store.add_blob_file(gguf)
        create_from_request(store, name, CreateRequest(files={gguf.name: layer.digest}))


def start_server(models: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(models),
               OLLAMA_NUM_PARALLEL="4", OLLAMA_KEEP_ALIVE="-1", OLLAMA_MAX_LOADED_MODELS="1")
    cmd = [sys.executable, "-c", "import sys; from runtime.cli import main; sys.argv[0] = 'llmcrate'; main()",
           "serve"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start within 60 s")


_local = threading.local()


def _http() -> httpx.Client:
    # one client per thread, kept alive: creating an httpx.Client costs ~15 ms (SSL context),
    # which is the bench's overhead, not the server's
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(timeout=None)
    return client


def served_run(url: str, prompt: str, opts: dict[str, Any], *, model: str = MODEL) -> dict[str, Any]:
    body = {"model": model, "prompt": prompt, "raw": True, "stream": True, "options": opts}
    http = _http()
    t0 = time.perf_counter()
    t_first = t_last = 0.0
    text, tokens, final = [], 0, {}
    with http.stream("POST", f"{url}/api/generate", json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line:
                continue
            chunk = json.loads(line)
            if chunk.get("response"):
                now = time.perf_counter()
                t_first = t_first or now
                t_last = now
                text.append(chunk["response"])
                tokens += 1
            if chunk.get("done"):
                final = chunk
    return {"ttft": t_first - t0, "tokens": final.get("eval_count", tokens), "chunks": tokens,
            "decode": (t_last - t_first), "text": "".join(text)}


def direct_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    return {"max_tokens": opts["num_predict"], "temperature": opts["temperature"], "seed": opts["seed"],
                "top_k": opts["top_k"], "top_p": opts["top_p"], "min_p": opts["min_p"], "typical_p": opts["typical_p"],
                "repeat_penalty": opts["repeat_penalty"], "presence_penalty": opts["presence_penalty"],
                "frequency_penalty": opts["frequency_penalty"]}


def direct_run(llm: Any, prompt: str, opts: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    t_first = t_last = 0.0
    text, chunks = [], 0
    for out in llm.create_completion(prompt, stream=True, **direct_kwargs(opts)):
        piece = out["choices"][0]["text"]
        if piece:
            now = time.perf_counter()
            t_first = t_first or now
            t_last = now
            text.append(piece)
            chunks += 1
    tokens = len(llm.tokenize("".join(text).encode(), add_bos=False, special=True))
    return {"ttft": t_first - t0, "tokens": chunks, "chunks": chunks, "decode": t_last - t_first,
            "text": "".join(text), "retokenized": tokens}


def rate(r: dict[str, Any]) -> float:
    # decode rate: the tokens after the first, over the time after the first
    return (r["chunks"] - 1) / r["decode"] if r["decode"] > 0 and r["chunks"] > 1 else 0.0


def concurrent(url: str, clients: int, opts: dict[str, Any], offset: int) -> tuple[float, float]:
    """Aggregate decode tokens/s and mean TTFT of ``clients`` simultaneous requests."""
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        r = served_run(url, PROMPT.format(i=offset + i), opts)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r["tokens"] for r in results)
    return tokens / wall, statistics.mean(r["ttft"] for r in results)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--num-predict", type=int, default=128)
    ap.add_argument("--size", type=parse_size, default=parse_size("256M"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    import llama_cpp

    load_before = os.getloadavg()[0]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    gguf = write_tiny_gguf(work / "bench.gguf", size=args.size, n_embd=512, n_layer=8, n_head=8,
                           n_head_kv=4, name="bench")
    tiny = write_tiny_gguf(work / "tiny.gguf")
    make_store(work / "models", {MODEL: gguf, TINY: tiny})
    opts = options(args)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(work / "models", port)
    try:
        time.sleep(1.0)
        rss_idle = memory_kib(server.pid)
        served_run(url, PROMPT.format(i="warm-up"), dict(opts, num_predict=4))   # load the model
        rss_loaded = memory_kib(server.pid)

        llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=opts["num_ctx"], n_batch=opts["num_batch"],
                              n_ubatch=opts["num_batch"], n_threads=args.threads,
                              n_threads_batch=args.threads, n_gpu_layers=-1, use_mmap=True,
                              seed=opts["seed"], last_n_tokens_size=opts["repeat_last_n"], verbose=False)
        direct_run(llm, PROMPT.format(i="warm-up"), dict(opts, num_predict=4))

        served, direct = [], []
        for i in range(args.runs):
            prompt = PROMPT.format(i=i)
            served.append(served_run(url, prompt, opts))
            direct.append(direct_run(llm, prompt, opts))
        same = sum(s["text"] == d["text"] for s, d in zip(served, direct))
        llm.close()

        # each level three times, the best kept: other load on a shared machine only slows runs down
        conc = {n: max((concurrent(url, n, opts, offset=100 * n + 10 * k) for k in range(3)),
                       key=lambda r: r[0]) for n in (1, 2, 4)}
        rss_after = memory_kib(server.pid)

        # per-request overhead: the same 16-token request on a ~1 MB model, where generation
        # itself takes about a millisecond
        small = dict(opts, num_predict=16)
        served_run(url, "warm-up", small, model=TINY)
        llm = llama_cpp.Llama(model_path=str(tiny), n_ctx=opts["num_ctx"], n_batch=opts["num_batch"],
                              n_threads=args.threads, n_threads_batch=args.threads, seed=opts["seed"],
                              last_n_tokens_size=opts["repeat_last_n"], verbose=False)
        direct_run(llm, "warm-up", small)
        tiny_served, tiny_direct = [], []
        for i in range(20):
            tiny_served.append(served_run(url, PROMPT.format(i=i), small, model=TINY)["ttft"] * 1000)
            tiny_direct.append(direct_run(llm, PROMPT.format(i=i), small)["ttft"] * 1000)
        llm.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()

    s_rate = statistics.median(rate(r) for r in served)
    d_rate = statistics.median(rate(r) for r in direct)
    s_ttft = statistics.median(r["ttft"] for r in served) * 1000
    d_ttft = statistics.median(r["ttft"] for r in direct) * 1000
    s_best, d_best = max(rate(r) for r in served), max(rate(r) for r in direct)
    s_ttft_best = min(r["ttft"] for r in served) * 1000
    d_ttft_best = min(r["ttft"] for r in direct) * 1000
    toks = statistics.median(r["chunks"] for r in served)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, "
          f"{platform.python_implementation()} {platform.python_version()}, "
          f"llama-cpp-python {llama_cpp.__version__}; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; load average before/after "
          f"{load_before:.1f}/{os.getloadavg()[0]:.1f}")
    print(f"Model: generated llama GGUF, {gguf.stat().st_size / 2**20:.0f} MiB float32 (n_embd 512, 8 layers); "
          f"greedy, seed 42, num_predict {args.num_predict}, num_ctx 2048, num_thread {args.threads}; "
          f"{args.runs} alternating runs each; ~{toks:.0f} tokens per reply; "
          f"identical text in {same}/{args.runs} runs\n")
    print("| | direct llama-cpp-python | llmcrate serve /api/generate | serve / direct |")
    print("|---|---:|---:|---:|")
    print(f"| decode tokens/s, median | {d_rate:.1f} | {s_rate:.1f} | {100 * s_rate / d_rate:.1f} % |")
    print(f"| decode tokens/s, best | {d_best:.1f} | {s_best:.1f} | {100 * s_best / d_best:.1f} % |")
    print(f"| time to first token, median | {d_ttft:.1f} ms | {s_ttft:.1f} ms | {s_ttft - d_ttft:+.1f} ms |")
    print(f"| time to first token, best | {d_ttft_best:.1f} ms | {s_ttft_best:.1f} ms | "
          f"{s_ttft_best - d_ttft_best:+.1f} ms |")
    print()
    print("| concurrent clients (NUM_PARALLEL=4), best of 3 | aggregate tokens/s | mean TTFT |")
    print("|---:|---:|---:|")
    for n, (tps, ttft) in conc.items():
        print(f"| {n} | {tps:.1f} | {ttft * 1000:.0f} ms |")
    print()
    t_s, t_d = statistics.median(tiny_served), statistics.median(tiny_direct)
    print(f"Per-request overhead (~1 MB model, 16 tokens, 20 alternating runs): TTFT median direct "
          f"{t_d:.1f} ms, served {t_s:.1f} ms ({t_s - t_d:+.1f} ms); best {min(tiny_direct):.1f} / "
          f"{min(tiny_served):.1f} ms")
    print()
    print(f"Server memory: idle {mib(rss_idle)}; model loaded (one context) {mib(rss_loaded)}; "
          f"after the concurrent runs (four contexts) {mib(rss_after)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
