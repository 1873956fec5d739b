"""runtime.cli.client against a scripted Ollama-protocol server on loopback: error mapping, NDJSON
streaming, cancellation by closing the stream, and nothing listening -> ServerUnavailable."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runtime.cli.client import Client, connect
from runtime.config import load_settings
from runtime.errors import ModelNotFound, ServerBusy, ServerError, ServerUnavailable


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _body(self) -> dict[str, Any]:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def _send(self, status: int, payload: Any, *, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/":
            self._send(200, None, raw=b"Ollama is running")
        elif self.path == "/api/version":
            self._send(200, {"version": "0.0.0-test"})
        elif self.path == "/api/ps":
            self._send(200, {"models": [{"name": "tiny:latest", "size": 1}]})
        else:
            self._send(404, {"error": "page not found"})

    def do_POST(self) -> None:
        body = self._body()
        self.server.requests.append((self.path, body))  # type: ignore[attr-defined]
        model = body.get("model", "")
        if model == "missing":
            self._send(404, {"error": f'model "{model}" not found, try pulling it first'})
        elif model == "busy":
            self._send(503, {"error": "server busy, please try again.  maximum pending requests exceeded"})
        elif model == "broken":
            self._send(500, None, raw=b"<html>internal</html>")
        elif self.path in ("/api/generate", "/api/chat"):
            self._stream(model, body)
        else:
            self._send(400, {"error": "unexpected"})

    def _stream(self, model: str, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        try:
            if model == "fails-midway":
                chunk({"model": model, "response": "par", "done": False})
                chunk({"error": "model runner crashed"})
            elif model == "endless":
                while True:
                    chunk({"model": model, "response": "x", "done": False})
                    time.sleep(0.01)
            else:
                for piece in ("Hel", "lo"):
                    chunk({"model": model, "response": piece, "done": False})
                chunk({"model": model, "response": "", "done": True, "done_reason": "stop",
                       "eval_count": 2, "eval_duration": 1000})
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.server.disconnects += 1  # type: ignore[attr-defined]


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.requests = []  # type: ignore[attr-defined]
    server.disconnects = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{server.server_address[1]}")
    yield server
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_is_server_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    with Client(load_settings()) as client:
        assert client.is_up() is False
        with pytest.raises(ServerUnavailable) as e:
            client.list()
        assert f"127.0.0.1:{port}" in str(e.value)
        assert "llmcrate serve" in (e.value.hint or "")
        with pytest.raises(ServerUnavailable):
            list(client.generate("tiny", "hi"))
    assert connect(load_settings()) is None


def test_up_version_ps(fake_server: ThreadingHTTPServer) -> None:
    client = connect(load_settings())
    assert client is not None
    with client:
        assert client.version() == "0.0.0-test"
        assert client.ps() == [{"name": "tiny:latest", "size": 1}]


def test_error_statuses_map_to_errors(fake_server: ThreadingHTTPServer) -> None:
    with Client(load_settings()) as client:
        with pytest.raises(ModelNotFound) as nf:
            client.show("missing")
        assert nf.value.name == "missing"
        with pytest.raises(ModelNotFound):
            list(client.chat("missing", [{"role": "user", "content": "hi"}]))
        with pytest.raises(ServerBusy):
            list(client.generate("busy", "hi"))
        with pytest.raises(ServerError) as e500:
            client.show("broken")
        assert e500.value.status == 500 and "internal" in str(e500.value)
        with pytest.raises(ServerError) as e400:
            client.show("anything")
        assert str(e400.value) == "unexpected" and e400.value.status == 400


def test_stream_yields_ndjson_and_sends_options(fake_server: ThreadingHTTPServer) -> None:
    with Client(load_settings()) as client:
        chunks = list(client.generate("tiny", "hi", options={"seed": 1}, keep_alive="1m", format="json"))
    assert "".join(c["response"] for c in chunks) == "Hello"
    assert chunks[-1]["done"] is True and chunks[-1]["eval_count"] == 2
    path, body = fake_server.requests[-1]  # type: ignore[attr-defined]
    assert path == "/api/generate"
    assert body == {"model": "tiny", "prompt": "hi", "stream": True, "options": {"seed": 1},
                    "keep_alive": "1m", "format": "json"}


def test_error_line_mid_stream_raises(fake_server: ThreadingHTTPServer) -> None:
    got: list[str] = []
    with Client(load_settings()) as client, pytest.raises(ServerError, match="model runner crashed"):
        for c in client.generate("fails-midway", "hi"):
            got.append(c["response"])
    assert got == ["par"]


def test_closing_a_stream_disconnects(fake_server: ThreadingHTTPServer) -> None:
    with Client(load_settings()) as client:
        stream = client.generate("endless", "hi")
        for i, _ in enumerate(stream):
            if i == 3:
                break
        stream.close()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while fake_server.disconnects == 0 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.02)
    assert fake_server.disconnects == 1  # type: ignore[attr-defined]


def test_stop_sends_keep_alive_zero_without_prompt(fake_server: ThreadingHTTPServer) -> None:
    with Client(load_settings()) as client:
        client.stop("tiny")
        with pytest.raises(ModelNotFound):
            client.stop("missing")
    assert fake_server.requests[0] == ("/api/generate", {"model": "tiny", "stream": True,  # type: ignore[attr-defined]
                                                          "keep_alive": 0})
