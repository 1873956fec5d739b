"""Cross-site writes: a web page's "simple" request (text/plain, no preflight) from an origin not
in OLLAMA_ORIGINS is refused with 403 before any route runs (issue 10)."""
from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.conftest import TINY

EVIL = {"Origin": "https://evil.example", "Content-Type": "text/plain"}

#: every state-changing route a page could aim at, with a body that would succeed
WRITES = [
    ("/api/create", {"model": "pwned", "from": TINY}),
    ("/api/copy", {"source": TINY, "destination": "pwned"}),
    ("/api/pull", {"model": "127.0.0.1:9/library/x", "insecure": True, "stream": False}),
    ("/api/generate", {"model": TINY, "prompt": "hi", "stream": False,
                       "options": {"num_predict": 1}}),
    ("/v1/chat/completions", {"model": TINY, "messages": [{"role": "user", "content": "hi"}],
                              "max_tokens": 1}),
]


def _manifests(store) -> list[str]:
    return sorted(m.name.display for m in store.list_models())


@pytest.mark.parametrize("path,body", WRITES, ids=[w[0] for w in WRITES])
def test_simple_cross_site_request_is_403(live_server, tiny_store, path: str, body: dict) -> None:
    url = live_server()
    before = _manifests(tiny_store)
    r = httpx.post(url + path, content=json.dumps(body), headers=EVIL, timeout=30)
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers
    assert _manifests(tiny_store) == before


def test_cross_site_delete_keeps_the_model(live_server, tiny_store) -> None:
    url = live_server()
    r = httpx.request("DELETE", url + "/api/delete", content=json.dumps({"model": TINY}),
                      headers=EVIL)
    assert r.status_code == 403
    assert httpx.get(url + "/api/tags").json()["models"][0]["name"] == TINY


def test_refused_before_the_body_is_read(live_server) -> None:
    """The headers promise a body that never comes: the 403 must not wait for it."""
    url = urlsplit(live_server())
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"POST /api/create HTTP/1.1\r\nHost: " + url.netloc.encode() +
                     b"\r\nOrigin: https://evil.example\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 1000000\r\n\r\n{\"model\": ")
        head = sock.recv(4096)           # a socket.timeout here means the server waited
    assert head.startswith(b"HTTP/1.1 403")


def test_allowed_origins_still_work(live_server, tiny_store) -> None:
    url = live_server(origins=("https://webui.example",))
    gen = json.dumps({"model": TINY, "prompt": "hi", "stream": False, "options": {"num_predict": 1}})
    for origin in ("https://webui.example", "http://localhost:3000", "http://127.0.0.1",
                   "https://0.0.0.0:8443", "app://obsidian.md", "file://", "tauri://localhost",
                   "vscode-webview://abc", "chrome-extension://abcdef", "moz-extension://x",
                   url):                            # same origin as the server itself
        r = httpx.post(url + "/api/generate", content=gen,
                       headers={"Origin": origin, "Content-Type": "text/plain"}, timeout=60)
        assert r.status_code == 200, origin
        assert r.headers.get("access-control-allow-origin") == origin or origin == url
    # no Origin at all: curl, the CLI, the Python clients
    r = httpx.post(url + "/api/copy", json={"source": TINY, "destination": "copied"})
    assert r.status_code == 200
    assert "copied:latest" in _manifests(tiny_store)
    for origin in ("https://webui.example.evil", "http://localhost.evil.example",
                   "https://evil.example", "null"):
        r = httpx.post(url + "/api/copy", json={"source": TINY, "destination": "x"},
                       headers={"Origin": origin})
        assert r.status_code == 403, origin


def test_ollama_origins_star_allows_every_origin(live_server) -> None:
    url = live_server(origins=("*",))
    r = httpx.post(url + "/api/copy", json={"source": TINY, "destination": "starred"},
                   headers={"Origin": "https://anything.example"})
    assert r.status_code == 200
