"""`llmcrate deploy --balancer haproxy`: the config (golden, `haproxy -c`), and a real HAProxy in
front of three `llmcrate serve` processes that keeps answering while backends die (issue 13)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
import yaml
from click.testing import CliRunner

from bundle.fleet.conftest import HAPROXY, free_port, wait_port
from bundler.balancer import Backend, render_haproxy
from runtime.cli import main
from tests.api.conftest import build_tiny_store

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "bundle" / "golden" / "haproxy.cfg"


def test_golden_config() -> None:
    text = render_haproxy([Backend("gpu-1", "10.0.0.11", 11434), Backend("gpu-2", "10.0.0.12", 11434),
                           Backend("v6", "fd00::3", 8080)], bind="0.0.0.0:11434")
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    assert "balance leastconn" in text and "option http-buffer-request" not in text
    assert "server v6 [fd00::3]:8080" in text


@pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed (apt-get install haproxy)")
def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(GOLDEN.read_text())
    r = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[WARNING]" not in r.stdout + r.stderr


def test_backends_from_the_inventory(tmp_path: Path) -> None:
    inv = tmp_path / "inv.ini"
    inv.write_text("[gpu]\nbox1 ansible_host=10.1.0.1 llmcrate_host=0.0.0.0:8080\n"
                   "box2 llmcrate_host=10.1.0.2:11434\nbox3.example\n")
    r = CliRunner().invoke(main, ["deploy", "--balancer", "haproxy", "-i", str(inv), "--bind", "127.0.0.1:9000"])
    assert r.exit_code == 0, r.output
    assert "bind 127.0.0.1:9000" in r.output
    assert "server box1 10.1.0.1:8080 " not in r.output  # the template puts nothing after the endpoint
    lines = [ln.strip() for ln in r.output.splitlines() if ln.strip().startswith("server ")]
    assert lines == ["server box1 10.1.0.1:8080", "server box2 10.1.0.2:11434",
                     "server box3.example box3.example:11434"]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["deploy", "--balancer", "haproxy", "-i", str(tmp_path / "nope.yml")])
    assert r.exit_code == 1 and r.output.strip().splitlines() == [f"Error: inventory {tmp_path / 'nope.yml'} not found"]
    bad = tmp_path / "inv.ini"
    bad.write_text("h1 llmcrate_host=1.2.3.4:99999\n")
    r = CliRunner().invoke(main, ["deploy", "--balancer", "haproxy", "-i", str(bad)])
    assert r.exit_code == 1 and "h1" in r.output and "port out of range" in r.output
    r = CliRunner().invoke(main, ["deploy", str(tmp_path / "x.tar"), "-i", str(bad), "--serial", "0"])
    assert r.exit_code == 1 and "--serial must be" in r.output
    r = CliRunner().invoke(main, ["deploy", str(tmp_path / "x.tar")])
    assert r.exit_code == 2 and "-i/--inventory is required" in r.output


@pytest.fixture
def backends(tmp_path: Path, tiny_gguf: Path) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
    """Three `llmcrate serve` processes over one tiny store."""
    models = tmp_path / "models"
    build_tiny_store(models, tiny_gguf)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "LLMCRATE_"))}
    procs = []
    for i in range(3):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "serve"], cwd=ROOT,
                                env={**env, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(models),
                                     "OLLAMA_NOPRUNE": "1"},
                                stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"serve{i}.log", "wb"))
        procs.append((port, proc))
    for port, _ in procs:
        wait_port(port, timeout=60)
    yield procs
    for _, proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)


def _start_balancer(tmp_path: Path, backends: list[tuple[int, subprocess.Popen[bytes]]], haproxy) -> int:
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {
        f"b{i}": {"llmcrate_host": f"127.0.0.1:{port}"} for i, (port, _) in enumerate(backends)}}}))
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    r = CliRunner().invoke(main, ["deploy", "--balancer", "haproxy", "-i", str(inv), "--bind",
                                  f"127.0.0.1:{port}", "-o", str(cfg)])
    assert r.exit_code == 0, r.output
    return haproxy(cfg.read_text().replace("inter 2s", "inter 300ms"), port)


def test_killing_backends_mid_run(tmp_path: Path, backends, haproxy) -> None:
    """SIGKILL one backend mid-run: requests keep succeeding (at most the one each client had in
    flight on the dead server is lost); then SIGTERM another while streaming (a graceful stop, as
    in a rolling upgrade): not one request fails."""
    port = _start_balancer(tmp_path, backends, haproxy)
    done: list[str] = []
    failures: list[str] = []
    stop = threading.Event()
    phase = {"stream": False}

    def chat() -> None:
        client = ollama.Client(host=f"http://127.0.0.1:{port}", timeout=60)
        while not stop.is_set():
            try:
                if phase["stream"]:
                    parts = list(client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                             options={"num_predict": 16}, stream=True))
                    assert parts[-1].done
                else:
                    client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                options={"num_predict": 16})
                done.append("ok")
            except Exception as e:  # every failure is the test's finding
                failures.append(f"{type(e).__name__}: {e}")

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 120
        target = len(done) + n
        while len(done) < target:
            assert time.monotonic() < deadline, f"only {len(done)} requests done; {failures}"
            time.sleep(0.05)

    workers = [threading.Thread(target=chat) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        wait_for(6)
        backends[0][1].send_signal(signal.SIGKILL)
        wait_for(30)
        killed = list(failures)
        phase["stream"] = True
        wait_for(4)
        backends[1][1].send_signal(signal.SIGTERM)
        wait_for(30)
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    log = (tmp_path / "haproxy.log").read_text()
    assert len(killed) <= len(workers), log[-5000:]
    assert failures == killed, log[-5000:]  # nothing lost in the graceful stop
    assert backends[1][1].wait(15) in (0, -signal.SIGTERM)  # stopped on its own, not killed
    assert "b0 is DOWN" in log and "b1 is DOWN" in log  # both taken out


def test_store_writes_are_refused_at_the_balancer(tmp_path: Path, backends, haproxy) -> None:
    port = _start_balancer(tmp_path, backends, haproxy)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        assert c.get("/api/tags").json()["models"][0]["name"] == "tiny:latest"
        for path in ("/api/pull", "/api/delete", "/api/create", "/api/copy"):
            r = c.post(path, json={"model": "tiny"})
            assert r.status_code == 403 and "llmcrate deploy" in r.json()["error"]
