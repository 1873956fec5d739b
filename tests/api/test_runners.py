"""Engine runners through the live server: crashes contained, batching, cancellation, option
bounds, special tokens, logprobs, one /api/ps row per model. Real processes, real llama.cpp."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.api.conftest import build_tiny_store, runner_cancellations
from tests.conftest import make_tiny_model

CRASHED = ("model runner has unexpectedly stopped, this may be due to resource limitations or "
           "an internal error, check logs for details")


def _runners(live_server: Any) -> list[Any]:
    srv = live_server.servers[-1]
    return list(srv.app.state.scheduler._runners.values())


def _chat(url: str, model: str = "tiny", **kw: Any) -> httpx.Response:
    body = {"model": model, "stream": False,
            "messages": [{"role": "user", "content": kw.pop("content", "hello")}], **kw}
    return httpx.post(url + "/api/chat", json=body, timeout=120)


@pytest.fixture
def two_models(tmp_path: Path, tiny_gguf: Path) -> Any:
    """A store with ``tiny`` and ``other`` (the same weights under another name) and ``dup``,
    a GGUF with a duplicated token string that aborts llama.cpp's vocab loader."""
    store = build_tiny_store(tmp_path / "models2", tiny_gguf)
    other = make_tiny_model.write_tiny_gguf(tmp_path / "other.gguf", seed=1)
    build_tiny_store(tmp_path / "models2", other, name="other:latest")
    dup = make_tiny_model.write_tiny_gguf(tmp_path / "dup.gguf", duplicate_token=True)
    build_tiny_store(tmp_path / "models2", dup, name="dup:latest")
    return store


def test_crashing_model_fails_alone_and_other_streams_go_on(live_server, two_models) -> None:
    url = live_server(store=two_models, max_loaded_models=3)
    with httpx.Client(timeout=120) as c:
        # a long stream to "other" runs while "dup" crashes its runner at load
        with c.stream("POST", url + "/api/generate",
                      json={"model": "other", "prompt": "go",
                            "options": {"num_predict": 400, "seed": 1}}) as stream:
            lines = stream.iter_lines()
            assert json.loads(next(lines))["done"] is False
            r = _chat(url, "dup")
            assert r.status_code == 500
            err = r.json()["error"]
            assert err.startswith("llama runner process has terminated") and "GGML_ASSERT" in err
            assert "/" not in err.split("GGML_ASSERT")[0].replace("llama runner", "")
            rest = [json.loads(x) for x in lines]
        assert rest[-1]["done"] is True and rest[-1]["eval_count"] == 400
    # the crash left no trace in ps and the server still serves
    assert [m.model for m in ollama.Client(host=url).ps().models] == ["other:latest"]
    assert _chat(url, "tiny", options={"num_predict": 3}).status_code == 200
    # a model that crashes at load answers each request with an error, no restart loop
    assert _chat(url, "dup").status_code == 500


def test_runner_killed_mid_stream(live_server, two_models) -> None:
    url = live_server(store=two_models, max_loaded_models=3)
    assert _chat(url, "other", options={"num_predict": 2}).status_code == 200
    with httpx.Client(timeout=120) as c, c.stream("POST", url + "/api/generate",
                  json={"model": "tiny", "prompt": "go",
                        "options": {"num_predict": 5000, "num_ctx": 8192, "seed": 1}}) as s:
        lines = s.iter_lines()
        assert json.loads(next(lines))["done"] is False
        [victim] = [r for r in _runners(live_server) if r.ref.name == "tiny:latest"]
        os.kill(victim.process.pid, signal.SIGKILL)
        tail = [json.loads(x) for x in lines]
    assert tail[-1] == {"error": CRASHED}
    # gone from ps at once; the other model's runner lives on; the next request starts afresh
    deadline = time.monotonic() + 10
    while "tiny:latest" in [m.model for m in ollama.Client(host=url).ps().models]:
        assert time.monotonic() < deadline, "the dead runner is still listed"
        time.sleep(0.05)
    assert [m.model for m in ollama.Client(host=url).ps().models] == ["other:latest"]
    r = _chat(url, "tiny", options={"num_predict": 3})
    assert r.status_code == 200 and r.json()["eval_count"] == 3
    [fresh] = [r for r in _runners(live_server) if r.ref.name == "tiny:latest"]
    assert fresh.process.pid != victim.process.pid


@pytest.mark.parametrize("option,value", [("num_thread", 100000), ("num_ctx", -5),
                                          ("num_gpu", -7), ("main_gpu", 999),
                                          ("num_batch", -1)])
def test_load_options_out_of_range_are_400(live_server, option: str, value: int) -> None:
    url = live_server()
    r = _chat(url, options={option: value})
    assert r.status_code == 400 and option in r.json()["error"]
    assert ollama.Client(host=url).ps().models == []          # nothing was started
    assert _chat(url, options={"num_predict": 2}).status_code == 200


def test_four_parallel_greedy_requests_equal_each_alone(live_server) -> None:
    url = live_server(num_parallel=4)
    prompts = ["hello", "tell me a story about a cat", "1 2 3 4", "why is the sky blue?"]
    opts = {"temperature": 0, "num_predict": 48}
    alone = [_chat(url, content=p, options=opts).json()["message"]["content"] for p in prompts]
    [runner] = _runners(live_server)
    pid = runner.process.pid
    for _ in range(2):
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda p: _chat(url, content=p, options=opts), prompts))
        assert [r.json()["message"]["content"] for r in together] == alone
    # one process held the model for all of them
    [runner] = _runners(live_server)
    assert runner.process.pid == pid and runner.process.info.n_seq == 4


def test_disconnect_mid_prompt_frees_the_only_slot(live_server, tmp_path: Path, caplog) -> None:
    gguf = make_tiny_model.write_tiny_gguf(tmp_path / "long.gguf", context_length=65536)
    store = build_tiny_store(tmp_path / "long-models", gguf)
    url = live_server(store=store, num_parallel=1)
    opts = {"num_ctx": 40000, "num_batch": 8, "num_predict": 4, "seed": 1}
    assert httpx.post(url + "/api/generate", json={"model": "tiny", "prompt": "", "options": opts},
                      timeout=60).status_code == 200       # loaded
    prompt = "word " * 30000          # ~30k tokens at 8 a step: minutes of prompt evaluation
    caplog.set_level(logging.INFO, logger="runtime.serve.runner")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/api/generate", timeout=1.5,
                   json={"model": "tiny", "prompt": prompt, "raw": True, "stream": False,
                         "options": opts})
    r = httpx.post(url + "/api/generate", timeout=120,
                   json={"model": "tiny", "prompt": "hi", "stream": False, "options": opts})
    assert r.status_code == 200 and r.json()["eval_count"] == 4
    # the long prompt stopped part way: the runner says how far it got
    found = runner_cancellations(caplog)
    assert found, "the runner never reported the cancelled prompt"
    done, total, _ = found[0]
    assert total > 20000 and done < total


def test_raw_mode_stops_on_a_special_token(live_server, smollm2_gguf: Path, tmp_path: Path) -> None:
    from runtime.models.create import CreateRequest, create_from_request
    from runtime.models.store import Store

    store = Store(tmp_path / "smol-models")
    blob = store.add_blob_file(smollm2_gguf)
    create_from_request(store, "smol", CreateRequest(files={"smol.gguf": blob.digest}))
    url = live_server(store=store)
    raw = "<|im_start|>user\nSay hi.<|im_end|>\n"     # greedy: the next turn's <|im_start|>
    body = {"model": "smol", "prompt": raw, "raw": True, "stream": False}
    # (create stored ChatML's stop list with the detected template; replace it here)
    free = httpx.post(url + "/api/generate", timeout=120, json={
        **body, "options": {"temperature": 0, "num_predict": 3, "stop": ["no such text"]}}).json()
    # special tokens are written out as text, as Ollama does
    assert free["response"].startswith("<|im_start|>")
    for options in ({"stop": ["<|im_start|>"]}, {}):     # the request's stop, the model's
        stopped = httpx.post(url + "/api/generate", timeout=120, json={
            **body, "options": {"temperature": 0, "num_predict": 3, **options}}).json()
        assert stopped["done_reason"] == "stop" and stopped["response"] == ""


def test_ps_has_one_row_for_chat_and_embed(live_server) -> None:
    url = live_server()
    client = ollama.Client(host=url)
    client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}],
                options={"num_predict": 2})
    [alone] = client.ps().models
    client.embed(model="tiny", input="hello")
    [row] = client.ps().models
    assert row.model == "tiny:latest" and row.size > alone.size
    assert len(_runners(live_server)) == 2          # a generation and an embedding runner


def test_logprobs_ollama_and_openai(live_server) -> None:
    url = live_server()
    r = httpx.post(url + "/api/chat", timeout=60, json={
        "model": "tiny", "stream": False, "logprobs": True, "top_logprobs": 3,
        "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 5, "temperature": 0}}).json()
    lps = r["logprobs"]
    assert len(lps) == r["eval_count"] == 5
    for lp in lps:
        assert lp["logprob"] <= 0 and len(lp["top_logprobs"]) == 3
        # greedy: the chosen token is the most likely one
        assert lp["logprob"] == pytest.approx(lp["top_logprobs"][0]["logprob"])
    assert "".join(lp["token"] for lp in lps) == r["message"]["content"]
    g = httpx.post(url + "/api/generate", timeout=60, json={
        "model": "tiny", "prompt": "hi", "stream": False, "logprobs": True,
        "options": {"num_predict": 4}}).json()
    assert len(g["logprobs"]) == 4 and "top_logprobs" not in g["logprobs"][0]
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    c = client.chat.completions.create(model="tiny", max_tokens=4, temperature=0, logprobs=True,
                                       top_logprobs=2,
                                       messages=[{"role": "user", "content": "hi"}])
    content = c.choices[0].logprobs.content
    assert len(content) == 4 and all(len(t.top_logprobs) == 2 for t in content)
    assert httpx.post(url + "/api/chat", timeout=60, json={
        "model": "tiny", "stream": False, "top_logprobs": 50,
        "messages": [{"role": "user", "content": "hi"}]}).status_code == 400


def test_the_server_process_never_loads_llama_cpp(tmp_path: Path, tiny_gguf: Path) -> None:
    """`llmcrate serve` answers a chat through a runner while its own process maps no llama.cpp."""
    import socket

    models = tmp_path / "srv-models"
    build_tiny_store(models, tiny_gguf)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OLLAMA_MODELS": str(models), "OLLAMA_HOST": f"127.0.0.1:{port}"}
    proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/api/version", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert _chat(url, options={"num_predict": 3}).status_code == 200
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "libllama" not in maps and "libggml" not in maps
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_bad_format_is_a_400_from_the_runner_and_it_serves_on(live_server) -> None:
    """A schema the runner cannot turn into a grammar is the client's error (400, through the
    one error mapper), for Ollama's and OpenAI's routes; the runner and its slot live on."""
    url = live_server()
    for fmt in ({"type": "nosuch"}, {"$ref": "#/nope"}):
        r = _chat(url, format=fmt, options={"num_predict": 2})
        assert r.status_code == 400 and "invalid JSON schema in format" in r.json()["error"]
    r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
        "model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "x", "schema": {"type": "nosuch"}}}})
    assert r.status_code == 400 and "invalid JSON schema" in r.json()["error"]["message"]
    assert _chat(url, format={"type": "object"}, options={"num_predict": 4}).status_code == 200
    [runner] = _runners(live_server)
    assert runner.process.alive and runner.active == 0


@pytest.mark.parametrize("path", ["/api/generate", "/v1/completions"])
def test_client_leaving_a_stream_stops_its_generation(live_server, caplog, path: str) -> None:
    """A client that leaves mid-stream stops its generation (NDJSON and SSE alike): the runner
    logs the cancellation long before the million tokens asked for."""
    url = live_server(num_parallel=1)
    opts = {"num_predict": 1_000_000, "num_ctx": 256, "seed": 1}
    body = ({"model": "tiny", "prompt": "hi", "raw": True, "options": opts} if path == "/api/generate"
            else {"model": "tiny", "prompt": "hi", "max_tokens": 1_000_000, "stream": True,
                  "seed": 1})
    caplog.set_level(logging.INFO, logger="runtime.serve.runner")
    with httpx.Client(timeout=60) as client, client.stream("POST", url + path, json=body) as r:
        assert r.status_code == 200
        for n, _ in enumerate(r.iter_lines()):
            if n == 20:
                break
    found = runner_cancellations(caplog, within=60)
    assert found, "the generation went on after its client left"
    assert all(generated < 1_000_000 for _, _, generated in found)
