#!/usr/bin/env python3
"""Benchmark: the engine runners against llama.cpp's own ``llama-server`` and direct llama-cpp-python.

    .venv/bin/python bench/bench_runners.py [--model GGUF] [--clients 1,2,4,8] [--rounds 2]
                                            [--num-predict 128] [--threads N] [--baseline REV]

Side by side in one run, on the same GGUF (SmolLM2-135M-Instruct Q4_1 from the test cache by
default), greedy, ``num_predict`` tokens, ``NUM_PARALLEL=4`` / ``-np 4`` with 2048 tokens of
context per sequence, the same thread count everywhere:

- ``llama-server`` built from the llama.cpp that the installed llama-cpp-python vendors
  (``bench/llama_server.py`` builds it once into a cache);
- ``llmcrate serve`` (this tree: one runner process, continuous batching);
- with ``--baseline REV``, ``llmcrate serve`` of an older commit (``git archive``) for the
  before/after ratio;
- llama-cpp-python called directly (one ``Llama``: single client only, it cannot batch).

Contenders alternate within each round, so background load hits all alike; the best round
counts. Reported: aggregate tokens/s at 1, 2, 4, 8 concurrent clients (each its own prompt),
single-client decode tokens/s and time to first token, and the PSS of the server and its
runner with NUM_PARALLEL=4 against weights + 4 KV caches. Prints a markdown block.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator works to a ten year old.",
    "List some facts about the planet Mars and its two moons.",
    "Describe the process of making bread from flour, water, salt and yeast.",
    "What are the main differences between a violin and a cello?",
    "Give advice to someone starting to learn the guitar as an adult.",
    "Summarise the history of the bicycle in a few paragraphs.",
    "Why do leaves change colour in the autumn? Explain the chemistry.",
]


def chatml(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: server exited ({proc.returncode})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout:.0f} s")


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


# -- contenders ------------------------------------------------------------------------------
class LlamaServer:
    name = "llama-server"

    def __init__(self, binary: Path, model: Path, args: argparse.Namespace) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(binary), "-m", str(model), "-np", "4", "-c", str(4 * args.ctx), "-t",
             str(args.threads), "-tb", str(args.threads), "-b", "512", "-ub", "512",
             "--port", str(self.port), "--host", "127.0.0.1", "--no-webui",
             "--threads-http", "16"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(self.url + "/health", self.proc)

    def run(self, prompt: str, n: int) -> dict[str, Any]:
        body = {"prompt": chatml(prompt), "n_predict": n, "temperature": 0, "seed": 42,
                "top_k": 40, "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.1,
                "repeat_last_n": 64, "stream": True, "cache_prompt": False}
        return _stream(self.url + "/completion", body, text_key="content",
                       count=lambda final: final.get("tokens_predicted"))

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Llmcrate:
    def __init__(self, name: str, tree: Path, model: Path, args: argparse.Namespace,
                 work: Path, *, warm: bool = True) -> None:
        from runtime.models.create import CreateRequest, create_from_request
        from runtime.models.store import Store

        self.name = name
        models = work / f"models-{name}"
        models.parent.mkdir(parents=True, exist_ok=True)
        store = Store(models)
        blob = store.add_blob_file(model)
        create_from_request(store, "bench", CreateRequest(files={model.name: blob.digest}))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{self.port}", OLLAMA_MODELS=str(models),
                   OLLAMA_NUM_PARALLEL="4", OLLAMA_KEEP_ALIVE="-1", PYTHONPATH=str(tree))
        self.proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "serve"], env=env,
                                     cwd=tree, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_http(self.url + "/", self.proc)
        self.opts = {"temperature": 0, "seed": 42, "num_ctx": args.ctx, "num_batch": 512,
                     "num_thread": args.threads, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
                     "repeat_penalty": 1.1, "repeat_last_n": 64}
        if warm:
            self.run("hello", 1)          # load before timing

    def run(self, prompt: str, n: int) -> dict[str, Any]:
        body = {"model": "bench", "prompt": chatml(prompt), "raw": True, "stream": True,
                "options": {**self.opts, "num_predict": n}}
        return _stream(self.url + "/api/generate", body, text_key="response",
                       count=lambda final: final.get("eval_count"))

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Direct:
    name = "llama-cpp-python"

    def __init__(self, model: Path, args: argparse.Namespace) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(str(model), n_ctx=args.ctx, n_batch=512, n_threads=args.threads,
                                   n_threads_batch=args.threads, verbose=False)
        self.lock = threading.Lock()

    def run(self, prompt: str, n: int) -> dict[str, Any]:
        with self.lock:
            t0 = time.perf_counter()
            first = last = 0.0
            count = 0
            for _ in self.llm.create_completion(chatml(prompt), max_tokens=n, temperature=0,
                                                top_k=40, top_p=0.9, min_p=0.0, seed=42,
                                                repeat_penalty=1.1, stream=True):
                now = time.perf_counter()
                first = first or now
                last = now
                count += 1
            return {"ttft": first - t0, "tokens": count, "decode": last - first, "wall": last - t0}

    def pids(self) -> list[int]:
        return [os.getpid()]

    def close(self) -> None:
        self.llm.close()


_local = threading.local()


def _stream(url: str, body: dict[str, Any], *, text_key: str,
            count: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    client = getattr(_local, "client", None) or httpx.Client(timeout=None)
    _local.client = client
    t0 = time.perf_counter()
    first = last = 0.0
    chunks = 0
    final: dict[str, Any] = {}
    with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            line = line.removeprefix("data: ").strip()
            if not line or line == "[DONE]":
                continue
            msg = json.loads(line)
            if msg.get(text_key):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
            if msg.get("done") or msg.get("stop"):
                final = msg
    return {"ttft": first - t0, "tokens": int(count(final) or chunks), "decode": last - first,
            "wall": last - t0}


def aggregate(c: Any, clients: int, n: int) -> float:
    prompts = [PROMPTS[i % len(PROMPTS)] + f" (client {i})" for i in range(clients)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda p: c.run(p, n), prompts))
    wall = time.perf_counter() - t0
    return sum(r["tokens"] for r in results) / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="GGUF (default: SmolLM2 from the test cache)")
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--num-predict", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=2048, help="context per sequence")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--baseline", help="also run llmcrate serve of this git revision")
    ap.add_argument("--cold", action="store_true",
                    help="only the cold start: 4 simultaneous first requests to a fresh server")
    args = ap.parse_args()
    from llama_server import llama_server

    model = args.model
    if model is None:
        from tests.conftest import TEST_CACHE
        from tests.smollm2 import fetch_smollm2

        model = fetch_smollm2(TEST_CACHE)
    if args.cold:
        cold_start(model, args)
        return
    binary = llama_server()
    clients = [int(x) for x in args.clients.split(",")]
    n = args.num_predict
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        contenders: list[Any] = [LlamaServer(binary, model, args),
                                 Llmcrate("llmcrate", ROOT, model, args, work)]
        if args.baseline:
            old = work / "baseline"
            old.mkdir()
            subprocess.run(f"git -C {ROOT} archive {args.baseline} | tar -x -C {old}",
                           shell=True, check=True)
            contenders.append(Llmcrate(f"llmcrate@{args.baseline[:7]}", old, model, args, work))
        direct = Direct(model, args)
        agg: dict[tuple[str, int], float] = {}
        single: dict[str, dict[str, float]] = {}
        pss: dict[str, int] = {}
        try:
            for rnd in range(args.rounds):
                for k in clients:
                    for c in contenders:
                        agg[(c.name, k)] = max(agg.get((c.name, k), 0.0), aggregate(c, k, n))
                        if k == 4:
                            pss[c.name] = pss_kib(c.pids())
                for c in [*contenders, direct]:
                    # a prompt no cache holds yet: TTFT includes the whole prompt evaluation
                    r = c.run(f"Round {rnd} of {c.name}. {PROMPTS[0]}", n)
                    best = single.setdefault(c.name, {"ttft": 1e9, "decode": 0.0})
                    best["ttft"] = min(best["ttft"], r["ttft"])
                    if r["decode"] > 0:
                        best["decode"] = max(best["decode"], (r["tokens"] - 1) / r["decode"])
                agg[(direct.name, 1)] = max(agg.get((direct.name, 1), 0.0),
                                            aggregate(direct, 1, n))
        finally:
            for c in contenders:
                c.close()
    kv = 4 * args.ctx * _kv_per_token(model)
    size = model.stat().st_size
    print(f"## Engine runners vs llama-server ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; "
          f"model {model.name} ({size / 2**20:.0f} MiB); greedy, {n} tokens, {args.threads} "
          f"threads, NUM_PARALLEL=4 / -np 4, {args.ctx} tokens per sequence; best of "
          f"{args.rounds} alternating rounds.\n")
    names = [c.name for c in contenders]
    print("| clients | " + " | ".join(f"{x} tok/s" for x in names) +
          " | llmcrate / llama-server |" + (" llmcrate / baseline |" if args.baseline else ""))
    print("|---:|" + "---:|" * (len(names) + 1 + bool(args.baseline)))
    for k in clients:
        row = [agg[(x, k)] for x in names]
        line = f"| {k} | " + " | ".join(f"{v:.1f}" for v in row) + f" | {row[1] / row[0]:.2f}x |"
        if args.baseline:
            line += f" {row[1] / row[2]:.2f}x |"
        print(line)
    print(f"\nSingle client ({direct.name} direct: {agg[(direct.name, 1)]:.1f} tok/s aggregate):\n")
    print("| | decode tok/s | TTFT ms |\n|---|---:|---:|")
    for name, best in single.items():
        print(f"| {name} | {best['decode']:.1f} | {best['ttft'] * 1000:.1f} |")
    d, s = single[direct.name], single["llmcrate"]
    print(f"\nllmcrate decode / direct: {s['decode'] / d['decode']:.3f}x; TTFT overhead "
          f"{(s['ttft'] - d['ttft']) * 1000:+.1f} ms")
    budget = (size + kv) * 1.10
    print("\nPSS with 4 clients, NUM_PARALLEL=4: " + ", ".join(
        f"{k} {v / 1024:.0f} MiB" for k, v in pss.items()) +
          f"; weights + 4 KV caches + 10 % = {budget / 2**20:.0f} MiB")


def cold_start(model: Path, args: argparse.Namespace) -> None:
    """Time to first token of 4 simultaneous first requests to a fresh server (the model not
    loaded yet), this tree and ``--baseline``."""
    trees = [("llmcrate", ROOT)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.baseline:
            old = work / "baseline"
            old.mkdir()
            subprocess.run(f"git -C {ROOT} archive {args.baseline} | tar -x -C {old}",
                           shell=True, check=True)
            trees.append((f"llmcrate@{args.baseline[:7]}", old))
        print(f"Cold start ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC), {model.name}, "
              f"4 simultaneous first requests, NUM_PARALLEL=4:\n")
        print("| server | first token, fastest | first token, slowest |\n|---|---:|---:|")
        for name, tree in trees:
            c = Llmcrate(name, tree, model, args, work / "cold", warm=False)
            with ThreadPoolExecutor(4) as pool:
                ttfts = sorted(pool.map(lambda i, c=c: c.run(f"{i}. {PROMPTS[i]}", 8)["ttft"], range(4)))
            c.close()
            print(f"| {name} | {ttfts[0]:.2f} s | {ttfts[-1]:.2f} s |")


def _kv_per_token(model: Path) -> int:
    from runtime.models.gguf_info import read_gguf_info

    kv = read_gguf_info(model).kv
    arch = kv.get("general.architecture", "")

    def num(key: str) -> int:
        v = kv.get(f"{arch}.{key}", 0)
        return int(max(v) if isinstance(v, list) else v)

    n_head = num("attention.head_count")
    n_kv = num("attention.head_count_kv") or n_head
    return num("block_count") * 2 * (num("embedding_length") * n_kv // max(1, n_head)) * 2


if __name__ == "__main__":
    main()
