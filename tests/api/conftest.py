"""A live llmcrate API server on a free loopback port, over a temp store with tiny models.

``live_server(**settings_overrides)`` starts uvicorn (in a thread of the test process) with
:func:`runtime.api.create_app` and returns the base URL, e.g. ``http://127.0.0.1:40123``.
Every server started by a test is stopped when the test ends. Other test folders reuse it::

    def test_x(live_server):
        url = live_server(num_parallel=2)
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

#: ChatML as an Ollama Go template, with tools rendered as JSON calls (Qwen-like).
CHATML_TOOLS_TEMPLATE = (
    "{{- if .Tools }}<|im_start|>system\n"
    "You may call: {{ range .Tools }}{{ .Function.Name }} {{ end }}<|im_end|>\n"
    "{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{- if .ToolCalls }}{{ range .ToolCalls }}\n"
    '{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{ end }}'
    "{{- else }}\n{{ .Content }}{{ end }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)
TINY = "tiny:latest"


def build_tiny_store(models_dir: Path, gguf: Path, *, name: str = TINY,
                     params: dict[str, Any] | None = None) -> Any:
    """A store holding ``name``: the tiny GGUF with a ChatML Go template and a stop token."""
    from runtime.models.create import CreateRequest, create_from_request
    from runtime.models.store import Store

    store = Store(models_dir)
    blob = store.add_blob_file(gguf)
    create_from_request(store, name, CreateRequest(
        files={gguf.name: blob.digest}, template=CHATML_TOOLS_TEMPLATE,
        parameters={"stop": ["<|im_end|>"], **(params or {})}))
    return store


class LiveServer:
    def __init__(self, settings: Any, store: Any) -> None:
        import uvicorn

        from runtime.api import create_app

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.app = create_app(settings, store=store)
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True, name=f"live-server-{self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("live server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture
def tiny_store(models_dir: Path, tiny_gguf: Path) -> Any:
    """The test's store (``OLLAMA_MODELS``) holding ``tiny:latest``."""
    return build_tiny_store(models_dir, tiny_gguf)


@pytest.fixture
def live_server(tiny_store: Any, models_dir: Path) -> Iterator[Callable[..., str]]:
    """Factory: ``live_server(store=None, **settings_overrides) -> base URL``."""
    from runtime.config import HostAddr, load_settings

    servers: list[LiveServer] = []

    def start(store: Any = None, **overrides: Any) -> str:
        settings = load_settings(models_dir=store.root if store is not None else models_dir,
                                 host=HostAddr(host="127.0.0.1", port=0), **overrides)
        srv = LiveServer(settings, store if store is not None else tiny_store)
        srv.start()
        servers.append(srv)
        return srv.url

    start.servers = servers       # type: ignore[attr-defined]  # white-box tests reach the app
    yield start
    for srv in servers:
        srv.stop()


def runner_cancellations(caplog: pytest.LogCaptureFixture, *, within: float = 30
                         ) -> list[tuple[int, int, int]]:
    """(prompt tokens evaluated, prompt tokens, tokens generated) of each generation a runner
    logged as cancelled. Runner logs reach this process through a pipe, so wait for the first
    one a while (a bound on waiting, not a speed assertion)."""
    import re

    deadline = time.monotonic() + within
    while True:
        found = [re.search(r"cancelled after (\d+) of (\d+) prompt tokens, (\d+) generated",
                           rec.getMessage()) for rec in caplog.records]
        counts = [(int(m.group(1)), int(m.group(2)), int(m.group(3))) for m in found if m]
        if counts or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)
