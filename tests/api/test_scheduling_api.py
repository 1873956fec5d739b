"""Scheduling through the live server: parallel slots, queue overflow, cancellation,
keep_alive, LRU eviction, a corrupt model, and the busy-port error of ``serve``."""
from __future__ import annotations

import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.api.conftest import (
    CHATML_TOOLS_TEMPLATE,
    build_tiny_store,
    runner_cancellations,
)
from tests.conftest import make_tiny_model

TINY = "tiny"
LONG = {"num_predict": 20000, "num_ctx": 32768, "seed": 1}   # ~30 s of tokens if not stopped


@pytest.fixture
def long_store(tmp_path: Path) -> Any:
    """A store whose model may use a 64k context, so generations can run for many seconds."""
    gguf = make_tiny_model.write_tiny_gguf(tmp_path / "long.gguf", context_length=65536)
    return build_tiny_store(tmp_path / "long-models", gguf)


def _cancelled(caplog: pytest.LogCaptureFixture) -> list[int]:
    """Tokens each cancelled generation had produced, as its runner logged it (no clock)."""
    return [generated for _, _, generated in runner_cancellations(caplog)]


def _generate(url: str, timeout: float = 60, **body: Any) -> httpx.Response:
    return httpx.post(url + "/api/generate", json={"model": TINY, "stream": False, **body},
                      timeout=timeout)


def test_parallel_requests_share_contexts_without_interfering(live_server) -> None:
    url = live_server(num_parallel=2)
    body = {"prompt": "same prompt", "options": {"seed": 9, "num_predict": 40}}
    expected = _generate(url, **body).json()["response"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _generate(url, **body), range(4)))
    assert [r.status_code for r in results] == [200] * 4
    assert {r.json()["response"] for r in results} == {expected}
    [loaded] = ollama.Client(host=url).ps().models
    assert loaded.model == "tiny:latest" and loaded.size > 0


def test_queue_overflow_503_and_disconnect_frees_the_slot(live_server, long_store,
                                                           caplog) -> None:
    caplog.set_level(logging.INFO, logger="runtime.serve.runner")
    url = live_server(store=long_store, num_parallel=1, max_queue=1)
    with httpx.Client(timeout=60) as c:
        _generate(url, prompt="", options=LONG)           # load first
        with c.stream("POST", url + "/api/generate",
                      json={"model": TINY, "prompt": "go on", "options": LONG}) as running:
            lines = running.iter_lines()
            assert json.loads(next(lines))["done"] is False   # the only slot is busy now
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(_generate, url, prompt="hi",
                                      options={**LONG, "num_predict": 3})
                time.sleep(0.5)
                busy = _generate(url, prompt="hi", options={**LONG, "num_predict": 3})
                assert busy.status_code == 503
                assert busy.json() == {"error": "server busy, please try again.  maximum "
                                                "pending requests exceeded"}
                assert not waiting.done()
                running.close()                            # client goes away mid-generation
                r = waiting.result(timeout=60)
    assert r.status_code == 200 and r.json()["eval_count"] == 3
    # the slot was freed by cancelling the generation, not by its end
    assert [n for n in _cancelled(caplog) if n < LONG["num_predict"]], "never cancelled"


def test_non_streaming_disconnect_cancels(live_server, long_store, caplog) -> None:
    caplog.set_level(logging.INFO, logger="runtime.serve.runner")
    url = live_server(store=long_store, num_parallel=1)
    _generate(url, prompt="", options=LONG)
    with pytest.raises(httpx.ReadTimeout):
        _generate(url, timeout=1.0, prompt="go", options=LONG)
    r = _generate(url, prompt="hi", options={**LONG, "num_predict": 2})
    assert r.status_code == 200 and r.json()["eval_count"] == 2
    assert [n for n in _cancelled(caplog) if n < LONG["num_predict"]], "never cancelled"


def test_keep_alive_expiry_and_forever(live_server) -> None:
    url = live_server(keep_alive=1.0)                      # OLLAMA_KEEP_ALIVE=1s
    client = ollama.Client(host=url)
    client.generate(model=TINY, prompt="x", options={"num_predict": 1})
    [m] = client.ps().models
    left = m.expires_at.timestamp() - time.time()
    assert 0 < left <= 1.5
    time.sleep(1.6)
    assert client.ps().models == []
    client.generate(model=TINY, prompt="x", options={"num_predict": 1}, keep_alive="1h")
    [m] = client.ps().models
    assert 3500 < m.expires_at.timestamp() - time.time() <= 3600
    client.generate(model=TINY, prompt="x", options={"num_predict": 1}, keep_alive=-1)
    [m] = client.ps().models
    assert m.expires_at.year > 2100
    client.generate(model=TINY, prompt="x", options={"num_predict": 1}, keep_alive=0)
    assert client.ps().models == []


def test_max_loaded_models_evicts_least_recently_used(live_server, tiny_store) -> None:
    from runtime.models.create import CreateRequest, create_from_request

    create_from_request(tiny_store, "other", CreateRequest(from_model="tiny", system="other"))
    url = live_server(max_loaded_models=1)
    client = ollama.Client(host=url)
    client.generate(model=TINY, prompt="x", options={"num_predict": 1})
    client.generate(model="other", prompt="x", options={"num_predict": 1})
    assert [m.model for m in client.ps().models] == ["other:latest"]


def test_corrupt_model_is_a_clear_500_and_server_stays_up(live_server, tiny_store,
                                                           tmp_path: Path) -> None:
    from runtime.models.create import CreateRequest, create_from_request

    gguf = make_tiny_model.write_tiny_gguf(tmp_path / "other.gguf", seed=7)
    blob = tiny_store.add_blob_file(gguf)
    create_from_request(tiny_store, "broken", CreateRequest(files={"x.gguf": blob.digest},
                                                            template=CHATML_TOOLS_TEMPLATE))
    path = tiny_store.blob_path(blob.digest)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])               # truncated on disk after create
    url = live_server()
    r = _generate(url, model="broken", prompt="hi")
    assert r.status_code == 500
    assert "unable to load model" in r.json()["error"]
    r = httpx.post(url + "/api/chat", json={"model": "broken", "stream": True,
                                            "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 500 and r.json()["error"]
    ok = _generate(url, prompt="hi", options={"num_predict": 2})
    assert ok.status_code == 200 and ok.json()["done"]
    assert [m.model for m in ollama.Client(host=url).ps().models] == ["tiny:latest"]


def test_serve_reports_a_busy_port(models_dir: Path) -> None:
    from runtime.api.server_main import serve
    from runtime.config import HostAddr, load_settings
    from runtime.errors import AddressInUse

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(AddressInUse, match=f"127.0.0.1:{port} already in use"):
            serve(load_settings(host=HostAddr(port=port)))



def test_a_queued_request_that_disconnects_leaves_the_queue(live_server, long_store) -> None:
    url = live_server(store=long_store, num_parallel=1, max_queue=1)
    _generate(url, prompt="", options=LONG)
    with httpx.Client(timeout=60) as c, c.stream("POST", url + "/api/generate",
                  json={"model": TINY, "prompt": "go on", "options": LONG}) as running:
        lines = running.iter_lines()                     # keep it: dropping it disconnects
        assert json.loads(next(lines))["done"] is False
        with pytest.raises(httpx.ReadTimeout):          # queued, then gives up
            _generate(url, timeout=0.5, prompt="hi", options={**LONG, "num_predict": 2})
        time.sleep(0.3)
        # its place in the queue is free again: this one queues instead of getting 503
        with pytest.raises(httpx.ReadTimeout):
            _generate(url, timeout=0.5, prompt="hi", options={**LONG, "num_predict": 2})
        running.close()


def test_two_slots_generate_at_the_same_time(live_server, long_store, caplog) -> None:
    caplog.set_level(logging.INFO, logger="runtime.serve.runner")
    url = live_server(store=long_store, num_parallel=2)
    _generate(url, prompt="", options=LONG)
    with httpx.Client(timeout=60) as c, c.stream("POST", url + "/api/generate",
                  json={"model": TINY, "prompt": "first", "options": LONG}) as a:
        a_lines = a.iter_lines()
        assert json.loads(next(a_lines))["done"] is False
        with c.stream("POST", url + "/api/generate",
                      json={"model": TINY, "prompt": "second", "options": LONG}) as b:
            b_lines = b.iter_lines()
            assert json.loads(next(b_lines))["done"] is False
            a.close()        # the first goes away while the second is generating
            assert json.loads(next(b_lines))["done"] is False
    # the second did not queue behind the first: the first was still generating when the
    # second had started, so it ended by cancellation, short of its num_predict
    assert [n for n in _cancelled(caplog) if n < LONG["num_predict"]], "ran one after the other"


def test_serve_prunes_unused_blobs_unless_noprune(tiny_store) -> None:
    from runtime.api.server_main import prepare_store
    from runtime.config import load_settings

    orphan = tiny_store.add_blob_bytes(b"left over from an interrupted create")
    kept = {p.name for p in tiny_store.blobs_dir.iterdir()} - {
        tiny_store.blob_path(orphan.digest).name}
    prepare_store(load_settings(models_dir=tiny_store.root, noprune=True))
    assert tiny_store.has_blob(orphan.digest)
    prepare_store(load_settings(models_dir=tiny_store.root))
    assert not tiny_store.has_blob(orphan.digest)
    assert {p.name for p in tiny_store.blobs_dir.iterdir()} == kept
