"""The README's first command runs scripts/demo.py: keep it working."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_demo_round_trip(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "LLMCRATE_"))}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--workdir",
                        str(tmp_path / "demo"), "--port", str(port)],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "3 model(s) verified" in out
    assert "answer (random weights, so random text):" in out
    assert "tinybot:latest" in out and "where everything went:" in out
    assert (tmp_path / "demo" / "opt" / "bin" / "llmcrate").exists()
