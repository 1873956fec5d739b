"""The ``/v1`` routes driven by the official ``openai`` client (httpx for raw SSE and errors)."""
from __future__ import annotations

import base64
import json
import struct

import httpx
import openai
import pytest

TINY = "tiny"


@pytest.fixture
def url(live_server) -> str:
    return live_server()


@pytest.fixture
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)


def test_chat_completion(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=TINY, max_tokens=6, seed=1,
                                       messages=[{"role": "user", "content": "hi"}])
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert r.usage.completion_tokens == 6 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + 6


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model=TINY, max_tokens=5, seed=2, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    same = client.chat.completions.create(model=TINY, max_tokens=5, seed=2,
                                          messages=[{"role": "user", "content": "hi"}])
    assert same.choices[0].message.content == text


def test_sse_ends_with_done(url: str) -> None:
    with httpx.stream("POST", url + "/v1/chat/completions", json={
            "model": TINY, "stream": True, "max_tokens": 3,
            "messages": [{"role": "user", "content": "hi"}]}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line for line in resp.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_response_format_and_tools(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    r = client.chat.completions.create(
        model=TINY, max_tokens=40, seed=4, messages=[{"role": "user", "content": "ok?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert isinstance(json.loads(r.choices[0].message.content)["ok"], bool)
    tools = [{"type": "function", "function": {
        "name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    force = {"type": "object", "properties": {
        "name": {"enum": ["lookup"]},
        "arguments": {"type": "object", "properties": {"q": {"enum": ["llmcrate"]}},
                      "required": ["q"]}}, "required": ["name", "arguments"]}
    r = client.chat.completions.create(
        model=TINY, max_tokens=64, seed=1, tools=tools,
        messages=[{"role": "user", "content": "look it up"}],
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": force}})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"q": "llmcrate"}
    follow = client.chat.completions.create(model=TINY, max_tokens=3, tools=tools, messages=[
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "found it"}])
    assert follow.choices[0].message.content is not None


def test_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model=TINY, prompt="once upon", max_tokens=4, seed=1)
    assert r.object == "text_completion" and r.choices[0].text
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 4
    parts = list(client.completions.create(model=TINY, prompt="once upon", max_tokens=4, seed=1,
                                           stream=True))
    assert "".join(p.choices[0].text for p in parts if p.choices) == r.choices[0].text


def test_models_and_embeddings(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == ["tiny:latest"]
    m = client.models.retrieve("tiny:latest")
    assert m.id == "tiny:latest" and m.owned_by == "library" and m.created > 0
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("ghost")
    e = client.embeddings.create(model=TINY, input=["a b c", "d"])
    assert len(e.data) == 2 and e.data[1].index == 1 and e.usage.prompt_tokens > 0
    raw = client.embeddings.create(model=TINY, input="a b c", encoding_format="base64")
    vec = raw.data[0].embedding
    if isinstance(vec, str):  # older clients hand base64 back as it came
        vec = list(struct.unpack(f"<{len(base64.b64decode(vec)) // 4}f", base64.b64decode(vec)))
    assert vec == pytest.approx(e.data[0].embedding, abs=1e-6)


def test_errors_are_openai_shaped(client: openai.OpenAI, url: str) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    assert "ghost" in e.value.message
    r = httpx.post(url + "/v1/chat/completions", json={"model": TINY, "messages": []})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(url + "/v1/chat/completions", content=b"{oops")
    assert r.status_code == 400 and r.json()["error"]["message"]
    r = httpx.post(url + "/v1/embeddings", json={"model": TINY, "input": "x",
                                                  "encoding_format": "int8"})
    assert r.status_code == 400
