#!/usr/bin/env python3
"""Pull vs curl: a 2 GB model from the loopback fake registry, side by side.

    .venv/bin/python bench/bench_pull.py [--size 2G] [--workdir /tmp/llmcrate-bench-pull]

The registry runs in its own process (so it does not share a GIL with the client). Measured:

1. ``curl -o`` of the model blob (one stream, no verification, left in the page cache), then
   the same made durable (``sync FILE``, which a pull does before a blob enters the store) and
   verified (``sha256sum``);
2. ``llmcrate pull`` (every layer, sha256 verified, stored, manifest written) with the default
   16 parts and with one part; wall time, ratio to curl, peak RSS of the pull process;
3. resume: a pull killed (SIGKILL) half-way, then re-run; the share of the blob the second run
   fetched again, counted by the server.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def serve(workdir: Path, gguf: Path) -> None:
    """Child process: publish the model and serve until killed."""
    from tests.fakes import FakeRegistry

    reg = FakeRegistry(workdir / "registry")
    reg.start()
    model = reg.add_model("library/big:latest", gguf, template="{{ .Prompt }}",
                          params={"stop": ["<|im_end|>"]})
    print(json.dumps({"host": reg.host, "digest": model.model_digest}), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    reg.stop()


def run_timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """(seconds, exit code, peak RSS in MiB) of a child process (RSS from GNU time)."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "maxrss=%M", *cmd], env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - t0
    lines = proc.stderr.strip().splitlines()
    rss = int(lines[-1].split("=")[1]) // 1024 if lines and lines[-1].startswith("maxrss=") else -1
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
    return elapsed, proc.returncode, rss


def served(host: str, digest: str) -> int:
    with urllib.request.urlopen(f"http://{host}/_stats?digest={digest}") as r:
        return int(json.load(r)["bytes_served"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="2G")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/llmcrate-bench-pull"))
    p.add_argument("--runs", type=int, default=3, help="rounds; each row reports the median")
    p.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.serve:
        serve(a.workdir, a.serve)
        return 0

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_tiny_model import parse_size, write_tiny_gguf

    work = a.workdir
    work.mkdir(parents=True, exist_ok=True)
    gguf = work / f"model-{a.size}.gguf"
    if not gguf.exists():
        print(f"writing a {a.size} GGUF ...", file=sys.stderr)
        write_tiny_gguf(gguf, size=parse_size(a.size))
    size = gguf.stat().st_size
    shutil.rmtree(work / "registry", ignore_errors=True)
    server = subprocess.Popen([sys.executable, __file__, "--workdir", str(work), "--serve", str(gguf)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        host, digest = info["host"], info["digest"]
        url = f"http://{host}/v2/library/big/blobs/{digest}"
        name = f"{host}/library/big:latest"
        rounds: dict[str, list[tuple[float, int]]] = {}

        def record(label: str, t: float, rss: int) -> None:
            rounds.setdefault(label, []).append((t, rss))

        def pull(parts: int | None) -> tuple[float, int]:
            models = work / "models"
            shutil.rmtree(models, ignore_errors=True)
            env = {**os.environ, "OLLAMA_MODELS": str(models), "OLLAMA_HOST": "127.0.0.1:9"}
            if parts:
                env["LLMCRATE_PULL_PARTS"] = str(parts)
            subprocess.run(["sync"], check=True)
            t, code, rss = run_timed([sys.executable, "-m", "runtime.cli", "pull", name, "--insecure"], env)
            assert code == 0, "pull failed"
            return t, rss

        out = work / "curl.out"
        for r in range(a.runs):  # rounds alternate the commands, so load drifts hit them alike
            for _ in range(2 if r == 0 else 1):  # the very first run warms the source's page cache
                out.unlink(missing_ok=True)
                subprocess.run(["sync"], check=True)
                t, code, rss = run_timed(["curl", "-s", "-f", "-o", str(out), url])
                assert code == 0, "curl failed"
            record("curl -o", t, rss)
            t0 = time.perf_counter()
            subprocess.run(["sync", str(out)], check=True)  # durable on disk, as a pull leaves it
            t_sync = t + time.perf_counter() - t0
            record("curl -o + sync FILE", t_sync, rss)
            t0 = time.perf_counter()
            subprocess.run(["sha256sum", str(out)], check=True, stdout=subprocess.DEVNULL)
            record("curl -o + sync + sha256sum", t_sync + time.perf_counter() - t0, rss)
            out.unlink()
            record("llmcrate pull (default: up to 16 parts)", *pull(None))
            record("llmcrate pull (1 part)", *pull(1))
        results = {label: (statistics.median(x[0] for x in v), max(x[1] for x in v))
                   for label, v in rounds.items()}

        # resume after a kill half-way
        models = work / "models"
        shutil.rmtree(models, ignore_errors=True)
        env = {**os.environ, "OLLAMA_MODELS": str(models), "OLLAMA_HOST": "127.0.0.1:9",
               "LLMCRATE_PULL_PARTS": "1"}
        before = served(host, digest)
        proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "pull", name, "--insecure"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while served(host, digest) - before < size // 2 and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = served(host, digest) - before
        t_resume, code, _ = run_timed([sys.executable, "-m", "runtime.cli", "pull", name, "--insecure"],
                                      env)
        assert code == 0, "resumed pull failed"
        second = served(host, digest) - before - first
        shutil.rmtree(models, ignore_errors=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)

    curl = results["curl -o"][0]
    print(f"pull vs curl: {size / 1e9:.2f} GB blob over loopback, "
          f"{platform.machine()} {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"median of {a.runs} rounds, load average {os.getloadavg()[0]:.2f}")
    print("| command | seconds | GB/s | ratio to curl -o | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for label, (t, rss) in results.items():
        print(f"| {label} | {t:.2f} | {size / t / 1e9:.2f} | {t / curl:.2f} | {rss} |")
    again = first + second - size
    print(f"\nresume: killed after {first / size:.0%} of the blob was served; the re-run fetched "
          f"{second / 1e6:.1f} MB, of which {again / 1e6:.1f} MB ({again / size:.2%} of the blob) "
          f"had been fetched before; it finished in {t_resume:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
