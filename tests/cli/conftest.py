"""A live ``llmcrate serve`` (the real command, in a subprocess) on a free loopback port, with a
store holding the tiny generated model, and a pseudo-terminal driver for ``llmcrate run``."""
from __future__ import annotations

import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
#: ``llmcrate`` as the installed console script would run it.
LLMCRATE = [sys.executable, "-c", "import sys; from runtime.cli import main; sys.argv[0] = 'llmcrate'; main()"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    host: str
    models: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def env(self, home: Path) -> dict[str, str]:
        """Environment for a CLI process talking to this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "LLMCRATE_"))}
        env.update(OLLAMA_HOST=self.host, OLLAMA_MODELS=str(self.models), HOME=str(home),
                   TERM="xterm", PYTHONPATH=str(ROOT), COLUMNS="", LINES="")
        return env


def _make_store(models: Path, gguf: Path) -> None:
    from runtime.models.create import CreateRequest, create_from_request
    from runtime.models.store import Store

    store = Store(models)
    layer = store.add_blob_file(gguf)
    create_from_request(store, "tiny:latest", CreateRequest(files={"tiny.gguf": layer.digest}))


@pytest.fixture(scope="module")
def live_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``llmcrate serve`` with one model, ``tiny:latest``; stopped (SIGTERM) after the module."""
    base = tmp_path_factory.mktemp("live")
    models = base / "models"
    _make_store(models, tiny_gguf)
    host = f"127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "LLMCRATE_"))}
    env.update(OLLAMA_HOST=host, OLLAMA_MODELS=str(models), HOME=str(base), PYTHONPATH=str(ROOT),
               OLLAMA_NUM_PARALLEL="1", OLLAMA_KEEP_ALIVE="5m", LLMCRATE_NUM_THREAD="1")
    log = (base / "server.log").open("wb")
    proc = subprocess.Popen([*LLMCRATE, "serve"], env=env, cwd=base, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llmcrate serve exited {proc.returncode}:\n{(base / 'server.log').read_text()}")
            try:
                if httpx.get(f"http://{host}/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llmcrate serve did not answer within 60 s")
            time.sleep(0.1)
        yield LiveServer(host=host, models=models, proc=proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Terminal:
    """``llmcrate ARGS`` on a pseudo-terminal: type into it, wait for text to appear."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # child: the pty is its controlling terminal, so ^C is a real SIGINT
            try:
                os.execve(sys.executable, [*LLMCRATE, *args], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.raw = ""        # everything read so far, escape sequences removed
        self.pos = 0         # where the next expect() starts looking
        self.status: int | None = None

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:   # EIO: the child closed the terminal
            return False
        if not data:
            return False
        self.raw += ANSI.sub("", data.decode("utf-8", errors="replace"))
        return True

    def expect(self, text: str, timeout: float = 30.0) -> str:
        """Wait until ``text`` appears after the last match; return what came before it."""
        deadline = time.monotonic() + timeout
        while True:
            idx = self.raw.find(text, self.pos)
            if idx >= 0:
                before = self.raw[self.pos:idx]
                self.pos = idx + len(text)
                return before
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} did not appear; output so far:\n{self.raw[self.pos:]!r}")
            if not self._read(min(left, 0.2)) and self.raw.find(text, self.pos) < 0:
                raise AssertionError(f"llmcrate closed the terminal before {text!r}; output:\n"
                                     f"{self.raw[self.pos:]!r}")

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
        raise AssertionError(f"llmcrate did not exit; output:\n{self.raw[self.pos:]!r}")

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


@pytest.fixture
def terminal(live_server: LiveServer, tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    """Start ``llmcrate ARGS...`` on a pty against the live server; closed after the test."""
    opened: list[Terminal] = []

    def start(*args: str) -> Terminal:
        t = Terminal(list(args), live_server.env(tmp_path))
        opened.append(t)
        return t

    yield start
    for t in opened:
        t.close()
