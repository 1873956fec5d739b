"""The native API driven by the official ``ollama`` client (and httpx for raw error cases)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import ollama
import pytest

TINY = "tiny"
FAST = {"num_predict": 8, "seed": 1}


@pytest.fixture
def url(live_server) -> str:
    return live_server()


@pytest.fixture
def client(url: str) -> ollama.Client:
    return ollama.Client(host=url)


def test_root_and_version(url: str) -> None:
    assert httpx.get(url).text == "Ollama is running"
    assert httpx.head(url).status_code == 200
    assert httpx.get(url + "/api/version").json()["version"]
    assert httpx.get(url + "/nope").status_code == 404
    assert httpx.head(url + "/api/tags").status_code == 200
    assert httpx.head(url + "/api/version").status_code == 200
    assert httpx.get(url + "/api/generate").status_code == 405


def test_generate_non_streaming_has_ollama_fields(client: ollama.Client) -> None:
    r = client.generate(model=TINY, prompt="hello", options=FAST)
    assert r.done and r.done_reason == "length"
    assert r.eval_count == 8 and r.prompt_eval_count > 0
    for field in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert getattr(r, field) > 0, field
    assert r.total_duration >= r.eval_duration
    assert r.context and len(r.context) == r.prompt_eval_count + r.eval_count
    assert isinstance(r.response, str) and r.response


def test_generate_streams_ndjson(url: str) -> None:
    with httpx.stream("POST", url + "/api/generate",
                      json={"model": TINY, "prompt": "hi", "options": FAST}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert all(not x["done"] for x in lines[:-1]) and lines[-1]["done"]
    last = lines[-1]
    assert last["done_reason"] == "length" and last["eval_count"] == 8
    assert {"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
            "eval_duration", "context", "created_at", "model"} <= set(last)
    assert "".join(x["response"] for x in lines)


def test_same_seed_same_output(client: ollama.Client) -> None:
    opts = {"seed": 42, "num_predict": 20, "temperature": 0.9}
    a = client.generate(model=TINY, prompt="tell me", options=opts).response
    b = client.generate(model=TINY, prompt="tell me", options=opts).response
    c = client.generate(model=TINY, prompt="tell me", options={**opts, "seed": 43}).response
    assert a == b
    assert a != c


def test_stop_option_and_modelfile_precedence(client: ollama.Client) -> None:
    full = client.generate(model=TINY, prompt="x", options={"seed": 5, "num_predict": 30,
                                                            "temperature": 0}).response
    stop = full[5:8]
    cut = client.generate(model=TINY, prompt="x", options={"seed": 5, "num_predict": 30,
                                                           "temperature": 0, "stop": [stop]})
    assert cut.response == full[: full.index(stop)] and cut.done_reason == "stop"


def test_chat_streaming_and_not(client: ollama.Client) -> None:
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    r = client.chat(model=TINY, messages=msgs, options=FAST)
    assert r.message.role == "assistant" and r.message.content and r.done
    parts = list(client.chat(model=TINY, messages=msgs, options=FAST, stream=True))
    assert "".join(p.message.content for p in parts) == r.message.content
    assert parts[-1].done and parts[-1].eval_count == 8


def test_format_json_and_schema(client: ollama.Client) -> None:
    r = client.generate(model=TINY, prompt="json please", format="json",
                        options={"num_predict": 24, "seed": 3})
    assert r.response.lstrip()[:1] in ("{", "[")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    r = client.chat(model=TINY, messages=[{"role": "user", "content": "n?"}], format=schema,
                    options={"num_predict": 64, "seed": 3})
    assert isinstance(json.loads(r.message.content)["n"], int)


def test_tool_calls_are_parsed(client: ollama.Client) -> None:
    tool = {"type": "function", "function": {
        "name": "get_weather", "description": "weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}
    # random weights cannot choose a tool; a schema makes the output a call for this test
    force = {"type": "object", "properties": {
        "name": {"enum": ["get_weather"]},
        "arguments": {"type": "object", "properties": {"city": {"enum": ["Paris"]}},
                      "required": ["city"]}}, "required": ["name", "arguments"]}
    r = client.chat(model=TINY, messages=[{"role": "user", "content": "weather in Paris?"}],
                    tools=[tool], format=force, options={"num_predict": 64, "seed": 1})
    assert r.message.tool_calls, r.message
    call = r.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments == {"city": "Paris"}
    # a tool result goes back in as a "tool" message
    r2 = client.chat(model=TINY, tools=[tool], options=FAST, messages=[
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"}])
    assert r2.done


def test_embed_and_legacy_embeddings(client: ollama.Client, url: str) -> None:
    r = client.embed(model=TINY, input=["hello world", "bye"])
    assert len(r.embeddings) == 2 and r.embeddings[0] != r.embeddings[1]
    assert math.isclose(sum(v * v for v in r.embeddings[0]), 1.0, rel_tol=1e-4)
    assert r.prompt_eval_count > 0
    assert len(client.embed(model=TINY, input="x", dimensions=16).embeddings[0]) == 16
    legacy = client.embeddings(model=TINY, prompt="hello world")
    assert len(legacy.embedding) == len(r.embeddings[0])
    assert httpx.post(url + "/api/embed", json={"model": TINY, "input": [1, 2]}).status_code == 400
    assert httpx.post(url + "/api/embed", json={"model": TINY}).json()["embeddings"] == []


def test_tags_show_copy_delete(client: ollama.Client, url: str) -> None:
    assert [m.model for m in client.list().models] == ["tiny:latest"]
    shown = client.show(TINY)
    assert shown.details.family == "llama" and "<|im_start|>" in shown.template
    assert "completion" in shown.capabilities
    client.copy(TINY, "copy:v1")
    assert {m.model for m in client.list().models} == {"tiny:latest", "copy:v1"}
    assert client.generate(model="copy:v1", prompt="x", options=FAST).done
    client.delete("copy:v1")
    assert [m.model for m in client.list().models] == ["tiny:latest"]
    with pytest.raises(ollama.ResponseError) as e:
        client.delete("copy:v1")
    assert e.value.status_code == 404
    r = httpx.post(url + "/api/copy", json={"source": "ghost", "destination": "x"})
    assert r.status_code == 404 and r.json() == {"error": 'model "ghost" not found'}


def test_create_from_model_and_from_uploaded_blob(client: ollama.Client, tiny_gguf: Path,
                                                  url: str) -> None:
    client.create(model="bot", from_=TINY, system="You are a bot.",
                  parameters={"temperature": 0.1, "num_predict": 4})
    shown = client.show("bot")
    assert "You are a bot." in shown.modelfile
    assert "temperature" in shown.parameters
    r = client.generate(model="bot", prompt="hi")
    assert r.eval_count == 4            # Modelfile parameter used ...
    r = client.generate(model="bot", prompt="hi", options={"num_predict": 2})
    assert r.eval_count == 2            # ... and request options win
    digest = client.create_blob(tiny_gguf)
    assert httpx.head(f"{url}/api/blobs/{digest}").status_code == 200
    progress = [p.status for p in client.create(model="fromfile", files={"tiny.gguf": digest},
                                                 stream=True)]
    assert progress[-1] == "success"
    assert client.generate(model="fromfile", prompt="x", options=FAST).done
    with pytest.raises(ollama.ResponseError) as e:
        client.create(model="bad", from_=TINY, parameters={"temprature": 1})
    assert e.value.status_code == 400 and "temperature" in str(e.value)
    with pytest.raises(ollama.ResponseError) as e:
        client.create(model="bad", files={"x.gguf": "sha256:" + "1" * 64})
    assert e.value.status_code == 400
    with pytest.raises(ollama.ResponseError) as e:
        client.create(model="bad", from_="ghost")
    assert e.value.status_code == 404


def test_blob_upload_checks_digest(url: str) -> None:
    wrong = "sha256:" + "0" * 64
    assert httpx.head(f"{url}/api/blobs/{wrong}").status_code == 404
    r = httpx.post(f"{url}/api/blobs/{wrong}", content=b"some bytes")
    assert r.status_code == 400 and "digest mismatch" in r.json()["error"]
    assert httpx.head(f"{url}/api/blobs/{wrong}").status_code == 404
    assert httpx.post(f"{url}/api/blobs/sha256:zz", content=b"x").status_code == 400


def test_errors_are_ollama_shaped(url: str) -> None:
    r = httpx.post(url + "/api/generate", json={"model": "ghost", "prompt": "x"})
    assert r.status_code == 404 and r.json() == {"error": 'model "ghost" not found'}
    r = httpx.post(url + "/api/chat", json={"model": "ghost", "messages": []})
    assert r.status_code == 404
    r = httpx.post(url + "/api/generate", content=b"{not json")
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
    r = httpx.post(url + "/api/generate", content=b"")
    assert r.status_code == 400 and r.json()["error"] == "missing request body"
    r = httpx.post(url + "/api/chat", json={"model": TINY, "messages": "hi"})
    assert r.status_code == 400 and "messages" in r.json()["error"]
    r = httpx.post(url + "/api/generate", json={"model": TINY, "prompt": "x",
                                                 "options": {"temperature": "hot"}})
    assert r.status_code == 400 and "temperature" in r.json()["error"]
    r = httpx.post(url + "/api/generate", json={"model": TINY, "prompt": "x", "format": "yaml"})
    assert r.status_code == 400
    r = httpx.post(url + "/api/generate", json={"model": "bad name!", "prompt": "x"})
    assert r.status_code == 400
    r = httpx.post(url + "/api/generate", json={"model": TINY, "prompt": "x", "keep_alive": "soon"})
    assert r.status_code == 400 and "duration" in r.json()["error"]
    r = httpx.post(url + "/api/generate", json={"model": TINY, "prompt": "x",
                                                 "options": {"bogus": 1, "num_predict": 2}})
    assert r.status_code == 200          # unknown options are warned about, not fatal
    big = b'{"model": "tiny", "prompt": "' + b"a" * (65 << 20) + b'"}'
    assert httpx.post(url + "/api/generate", content=big).status_code == 413


def test_load_and_unload_with_empty_prompt(client: ollama.Client) -> None:
    r = client.generate(model=TINY, prompt="")
    assert r.done and r.done_reason == "load"
    assert [m.model for m in client.ps().models] == ["tiny:latest"]
    r = client.generate(model=TINY, prompt="", keep_alive=0)
    assert r.done_reason == "unload"
    assert client.ps().models == []
    r = client.chat(model=TINY, messages=[])
    assert r.done_reason == "load"
    assert client.chat(model=TINY, messages=[], keep_alive=0).done_reason == "unload"


def test_cors_follows_ollama_origins(live_server) -> None:
    url = live_server(origins=("https://webui.example",))
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = httpx.options(url + "/api/chat", headers={"Origin": "https://webui.example", **pre})
    assert ok.headers.get("access-control-allow-origin") == "https://webui.example"
    local = httpx.options(url + "/api/chat", headers={"Origin": "http://localhost:3000", **pre})
    assert local.headers.get("access-control-allow-origin") == "http://localhost:3000"
    ext = httpx.options(url + "/api/chat", headers={"Origin": "chrome-extension://abc", **pre})
    assert ext.headers.get("access-control-allow-origin") == "chrome-extension://abc"
    bad = httpx.options(url + "/api/chat", headers={"Origin": "https://evil.example", **pre})
    assert "access-control-allow-origin" not in bad.headers
    # DNS rebinding: a foreign Host header is refused on a loopback server
    assert httpx.get(url + "/api/tags", headers={"Host": "evil.example"}).status_code == 403


def test_pull_from_a_registry_mirror(client: ollama.Client, tiny_gguf: Path, tmp_path: Path,
                                     url: str) -> None:
    from tests.fakes import FakeRegistry

    with FakeRegistry(tmp_path / "registry") as reg:
        reg.add_model("library/mirrored:latest", tiny_gguf, template="{{ .Prompt }}")
        name = f"{reg.host}/library/mirrored:latest"
        statuses = [p.status for p in client.pull(name, insecure=True, stream=True)]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
        assert statuses.count("success") == 1
        r = httpx.post(url + "/api/pull", json={"model": f"{reg.host}/library/absent:latest",
                                                "insecure": True, "stream": False}, timeout=30)
        assert r.status_code >= 400 and r.json()["error"]
    assert client.generate(model=name, prompt="x", options=FAST).done



def test_model_without_go_template_uses_the_gguf_chat_template(client: ollama.Client,
                                                               tiny_store, tiny_gguf: Path) -> None:
    from runtime.models.create import CreateRequest, create_from_request

    blob = tiny_store.add_blob_file(tiny_gguf)
    create_from_request(tiny_store, "jinja", CreateRequest(files={"t.gguf": blob.digest}))
    msgs = [{"role": "user", "content": "hi"}]
    go = client.chat(model=TINY, messages=msgs, options=FAST)
    jinja = client.chat(model="jinja", messages=msgs, options=FAST)
    # both render ChatML: the Go template of tiny, the GGUF's Jinja template of "jinja"
    assert jinja.prompt_eval_count == go.prompt_eval_count > 10
    assert jinja.message.content == go.message.content


def test_capability_checks(url: str, tiny_store, tiny_gguf: Path) -> None:
    from runtime.models.create import CreateRequest, create_from_request

    create_from_request(tiny_store, "plain", CreateRequest(from_model=TINY,
                                                           template="{{ .Prompt }}"))
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    r = httpx.post(url + "/api/chat", json={"model": "plain", "tools": [tool],
                                            "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"].endswith("does not support tools")
    r = httpx.post(url + "/api/generate", json={"model": "plain", "prompt": "a", "suffix": "b"})
    assert r.status_code == 400 and r.json()["error"].endswith("does not support insert")
    r = httpx.post(url + "/api/chat", json={"model": TINY, "think": True,
                                            "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"] == '"tiny" does not support thinking'
    r = httpx.post(url + "/api/generate", json={"model": TINY, "prompt": "x", "images": ["aGk="]})
    assert r.status_code == 400 and "vision" in r.json()["error"]


THINK_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n{{ if .Think }}<think>\n{{ end }}"
)


def test_thinking_is_separated_for_thinking_templates(client: ollama.Client, tiny_store,
                                                      url: str) -> None:
    from runtime.models.create import CreateRequest, create_from_request

    create_from_request(tiny_store, "thinker", CreateRequest(from_model=TINY,
                                                             template=THINK_TEMPLATE))
    msgs = [{"role": "user", "content": "why?"}]
    # thinking is on by default; the prompt opened <think>, random weights never close it
    r = client.chat(model="thinker", messages=msgs, options=FAST)
    assert r.message.thinking and r.message.content == ""
    parts = list(client.chat(model="thinker", messages=msgs, options=FAST, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == r.message.thinking
    off = client.chat(model="thinker", messages=msgs, options=FAST, think=False)
    assert off.message.content and not off.message.thinking
    g = httpx.post(url + "/api/generate", json={"model": "thinker", "prompt": "why?",
                                                 "stream": False, "options": FAST}).json()
    assert g["thinking"] and g["response"] == ""
    o = httpx.post(url + "/v1/chat/completions", json={"model": "thinker", "messages": msgs,
                                                        "max_tokens": 8}).json()
    assert o["choices"][0]["message"]["reasoning"]
    # a format constrains the answer from the first token: thinking stays off unless asked
    j = client.chat(model="thinker", messages=msgs, format="json",
                    options={"num_predict": 16, "seed": 2})
    assert j.message.content.lstrip()[:1] in ("{", "[") and not j.message.thinking
