"""``llmcrate ps``, ``stop`` and ``serve`` against a live ``llmcrate serve``."""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx

from cli.conftest import LLMCRATE, LiveServer


def _llmcrate(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LLMCRATE, *args], env=env, input="", capture_output=True, text=True,
                          timeout=120)


def _load(server: LiveServer, keep_alive: str) -> None:
    r = httpx.post(f"{server.url}/api/generate", json={"model": "tiny", "keep_alive": keep_alive},
                   timeout=60)
    assert r.status_code == 200, r.text


def test_ps_lists_the_loaded_model(live_server: LiveServer, tmp_path: Path) -> None:
    _load(live_server, "10m")
    r = _llmcrate(["ps"], live_server.env(tmp_path))
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert len(rows) == 1
    digest = next(m["digest"] for m in httpx.get(f"{live_server.url}/api/tags").json()["models"]
                  if m["name"] == "tiny:latest")
    row = rows[0]
    assert row.startswith("tiny:latest    " + digest.split(":")[-1][:12])
    assert "100% CPU" in row
    assert row.endswith(("9 minutes from now", "10 minutes from now"))
    ctx = httpx.get(f"{live_server.url}/api/ps").json()["models"][0]["context_length"]
    assert f"    {ctx}    " in row

    _load(live_server, "-1")          # never unload
    assert _llmcrate(["ps"], live_server.env(tmp_path)).stdout.splitlines()[1].endswith("Forever")


def test_stop_unloads(live_server: LiveServer, tmp_path: Path) -> None:
    _load(live_server, "10m")
    assert httpx.get(f"{live_server.url}/api/ps").json()["models"]
    r = _llmcrate(["stop", "tiny"], live_server.env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert httpx.get(f"{live_server.url}/api/ps").json()["models"] == []
    assert _llmcrate(["ps"], live_server.env(tmp_path)).stdout.splitlines() == [
        "NAME    ID    SIZE    PROCESSOR    CONTEXT    UNTIL"]


def test_stop_unknown_model(live_server: LiveServer, tmp_path: Path) -> None:
    r = _llmcrate(["stop", "nope"], live_server.env(tmp_path))
    assert r.returncode == 1
    assert 'model "nope" not found' in r.stderr


def test_ps_and_stop_without_server(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"OLLAMA_HOST": f"127.0.0.1:{port}", "HOME": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for args in (["ps"], ["stop", "tiny"]):
        r = _llmcrate(args, env)
        assert r.returncode == 1
        assert "could not connect to llmcrate server" in r.stderr and "llmcrate serve" in r.stderr


def test_serve_on_a_taken_port_is_one_clear_error(live_server: LiveServer, tmp_path: Path) -> None:
    r = _llmcrate(["serve"], live_server.env(tmp_path))
    assert r.returncode == 1
    assert f"address {live_server.host} already in use" in r.stderr
    assert "Traceback" not in r.stderr
