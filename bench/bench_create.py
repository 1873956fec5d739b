#!/usr/bin/env python3
"""Benchmark: ``llmcrate create`` from a large GGUF against ``cp`` of the same file.

    .venv/bin/python bench/bench_create.py [--size 2G] [--workdir DIR] [--runs 3]

Both run cold-ish: the page cache is dropped before each run when we are root (else warm, said
so). Reports wall time, the ratio create/cp and the peak RSS of the create process.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().rstrip("B").rstrip("I")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1:] in units else int(t)


# the floor for any verified copy: reading and hashing the file once (hashlib/OpenSSL)
HASH_ONLY = """
import hashlib, sys
h = hashlib.sha256(); b = bytearray(8 << 20); v = memoryview(b)
with open(sys.argv[1], "rb", buffering=0) as f:
    while (n := f.readinto(b)):
        h.update(v[:n])
"""


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of a child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {p.returncode}")
    return wall, ru.ru_maxrss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=parse_size, default=parse_size("2G"))
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    work = a.workdir
    work.mkdir(parents=True, exist_ok=True)
    gguf = work / "big.gguf"
    if not gguf.exists() or gguf.stat().st_size < a.size:
        print(f"writing {a.size / 1e9:.2f} GB model ...", file=sys.stderr)
        # in a child process: ru_maxrss of our children would otherwise start from our size
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tiny_model.py"), str(gguf),
                        "--size", str(a.size)], check=True)
    (work / "Modelfile").write_text(f"FROM {gguf}\n")
    llmcrate = str(Path(sys.executable).with_name("llmcrate"))
    cps, cpsyncs, hashes, creates, rss = [], [], [], [], []
    cold = None
    for _ in range(a.runs):
        shutil.rmtree(work / "models", ignore_errors=True)
        (work / "copy.gguf").unlink(missing_ok=True)
        cold = drop_caches()
        cps.append(timed(["cp", str(gguf), str(work / "copy.gguf")])[0])
        (work / "copy.gguf").unlink()
        cold = drop_caches()
        cpsyncs.append(timed(["sh", "-c", f"cp '{gguf}' '{work / 'copy.gguf'}' && sync"])[0])
        (work / "copy.gguf").unlink()
        cold = drop_caches()
        hashes.append(timed([sys.executable, "-c", HASH_ONLY, str(gguf)])[0])
        cold = drop_caches()
        env = dict(os.environ, OLLAMA_MODELS=str(work / "models"), OLLAMA_HOST="127.0.0.1:9")
        wall, peak = timed([llmcrate, "create", "big", "-f", str(work / "Modelfile")], env)
        creates.append(wall)
        rss.append(peak)
    size = gguf.stat().st_size
    cp_s, cr_s = statistics.median(cps), statistics.median(creates)
    cps_s, h_s = statistics.median(cpsyncs), statistics.median(hashes)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}; cache: {'dropped before each run' if cold else 'warm'}")
    print(f"file: {size / 1e9:.2f} GB, runs: {a.runs} (median)")
    print(f"{'cp':<18}{cp_s:8.2f} s  {size / cp_s / 1e9:6.2f} GB/s")
    print(f"{'cp + sync':<18}{cps_s:8.2f} s  {size / cps_s / 1e9:6.2f} GB/s  (durable, as create)")
    print(f"{'sha256 only':<18}{h_s:8.2f} s  {size / h_s / 1e9:6.2f} GB/s  (hashlib: the floor)")
    print(f"{'llmcrate create':<18}{cr_s:8.2f} s  {size / cr_s / 1e9:6.2f} GB/s  "
          f"(sha256 included)  peak RSS {max(rss) / 1024:.0f} MiB")
    print(f"ratio create/cp: {cr_s / cp_s:.2f}x (goal <= 1.2x); create/(cp+sync): "
          f"{cr_s / cps_s:.2f}x; create/sha256-only: {cr_s / h_s:.2f}x")
    import os as _os
    print(f"load average during the run: {_os.getloadavg()[0]:.2f}")
    shutil.rmtree(work / "models", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
