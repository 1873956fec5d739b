"""Errors sent to clients never name server paths; the log keeps them (issue 10)."""
from __future__ import annotations

import logging

import httpx
import pytest

from runtime.api.errors import scrub_paths
from tests.api.conftest import TINY


def _corrupt_weights(store) -> str:
    manifest = store.resolve(TINY)
    layer = next(la for la in manifest.layers if la.media_type.endswith(".model"))
    path = store.blob_path(layer.digest)
    data = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(data[: len(data) // 3])          # a truncated GGUF: llama.cpp cannot load it
    return str(path)


def test_a_model_that_cannot_load_is_named_not_its_path(live_server, tiny_store,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    url = live_server()
    blob = _corrupt_weights(tiny_store)
    caplog.set_level(logging.WARNING)
    msg = [{"role": "user", "content": "x"}]
    answers = [
        httpx.post(url + "/api/generate", json={"model": TINY, "prompt": "x", "stream": False},
                   timeout=60).json()["error"],
        httpx.post(url + "/api/chat", json={"model": TINY, "messages": msg, "stream": False},
                   timeout=60).json()["error"],
        httpx.post(url + "/v1/chat/completions", json={"model": TINY, "messages": msg},
                   timeout=60).json()["error"]["message"],
    ]
    for text in answers:
        assert "/" not in text, text
        assert '"tiny:latest"' in text, text
    assert blob in caplog.text                   # the operator still sees where it is


def test_scrub_keeps_what_is_not_a_server_path() -> None:
    keep = "see http://example.com/a/b, hf.co/user/repo:q4 or int/float; POST /api/chat"
    assert scrub_paths(keep) == keep
    assert scrub_paths("not enough disk space in /var/lib/llmcrate/models: need 2 GB") == \
        "not enough disk space in models: need 2 GB"
    assert scrub_paths("[Errno 30] Read-only file system: '/srv/m/blobs/.tmp-9-x'") == \
        "[Errno 30] Read-only file system: '.tmp-9-x'"
