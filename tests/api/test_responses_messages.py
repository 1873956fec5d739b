"""``/v1/responses`` (OpenAI Responses API, through the ``openai`` client) and ``/v1/messages``
(Anthropic Messages API, through the ``anthropic`` client) against the live server."""
from __future__ import annotations

import anthropic
import httpx
import ollama
import openai
import pytest

from runtime.api.anthropic import to_messages as anthropic_messages
from runtime.api.errors import ApiError
from runtime.api.responses import to_messages as responses_messages

GREEDY = {"temperature": 0, "top_p": 1, "num_predict": 8}
#: sampling fields sent raw (newer anthropic clients no longer take them as arguments)
SAMPLING = {"temperature": 0, "top_p": 1}


def _chat(url: str, messages: list[dict], **options: object) -> ollama.ChatResponse:
    return ollama.Client(host=url).chat(model="tiny", messages=messages,
                                        options={**GREEDY, **options})


def test_responses_equal_the_native_chat(live_server) -> None:
    url = live_server()
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    r = client.responses.create(model="tiny", instructions="Be brief.", input="hello there",
                                temperature=0, max_output_tokens=8)
    want = _chat(url, [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": "hello there"}])
    assert r.object == "response" and r.model == "tiny"
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.output_text == want.message.content
    assert r.usage.input_tokens == want.prompt_eval_count
    assert r.usage.output_tokens == want.eval_count
    assert r.status == ("incomplete" if want.done_reason == "length" else "completed")
    assert r.instructions == "Be brief."


def test_responses_stream_events(live_server) -> None:
    url = live_server()
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    events = list(client.responses.create(
        model="tiny", stream=True, temperature=0, max_output_tokens=8,
        input=[{"role": "developer", "content": "Be brief."},
               {"role": "user", "content": [{"type": "input_text", "text": "hello there"}]}]))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    want = _chat(url, [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": "hello there"}])
    assert text == want.message.content
    assert events[-1].response.output[0].content[0].text == text
    assert "response.output_text.done" in kinds and "response.output_item.done" in kinds


def test_responses_errors(live_server) -> None:
    url = live_server()
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi")
    with pytest.raises(openai.BadRequestError, match="stateless"):
        client.responses.create(model="tiny", input="hi", previous_response_id="resp_1")
    r = httpx.post(url + "/v1/responses", json={"model": "tiny", "input": 5})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    for tools, says in ((5, "tools must be a list"),
                        ([{"type": "web_search"}], "only function tools are supported")):
        r = httpx.post(url + "/v1/responses", json={"model": "tiny", "input": "hi", "tools": tools})
        assert r.status_code == 400 and r.json()["error"]["message"] == says, r.text


def test_responses_input_items_become_chat_messages() -> None:
    msgs = responses_messages({"instructions": "sys", "input": [
        {"type": "message", "role": "user", "content": "weather?"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "It is sunny."}]},
    ]})
    assert [(m.role, m.content) for m in msgs] == [
        ("system", "sys"), ("user", "weather?"), ("assistant", ""), ("tool", "sunny"),
        ("assistant", "It is sunny.")]
    assert msgs[2].tool_calls == [{"id": "c1", "function": {"name": "get_weather",
                                                            "arguments": {"city": "Paris"}}}]
    assert msgs[2].thinking == "think" and msgs[3].tool_name == "get_weather"
    with pytest.raises(ApiError, match="arguments are not JSON"):
        responses_messages({"input": [{"type": "function_call", "arguments": "{"}]})


def test_messages_equal_the_native_chat(live_server) -> None:
    url = live_server()
    client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    r = client.messages.create(model="tiny", max_tokens=8, extra_body=SAMPLING,
                               system="Be brief.",
                               messages=[{"role": "user", "content": "hello there"}])
    want = _chat(url, [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": "hello there"}])
    assert r.type == "message" and r.role == "assistant" and r.model == "tiny"
    assert "".join(b.text for b in r.content if b.type == "text") == want.message.content
    assert r.stop_reason == {"length": "max_tokens", "stop": "end_turn"}[want.done_reason]
    assert r.usage.input_tokens == want.prompt_eval_count
    assert r.usage.output_tokens == want.eval_count


def test_messages_stream_events(live_server) -> None:
    url = live_server()
    client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    with client.messages.stream(model="tiny", max_tokens=8, extra_body=SAMPLING,
                                system=[{"type": "text", "text": "Be brief."}],
                                messages=[{"role": "user", "content": "hello there"}]) as s:
        kinds = [e.type for e in s]
        final = s.get_final_message()
    want = _chat(url, [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": "hello there"}])
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "message_delta" in kinds
    assert "".join(b.text for b in final.content if b.type == "text") == want.message.content
    assert final.usage.output_tokens == want.eval_count


def test_messages_errors_have_anthropic_shape(live_server) -> None:
    url = live_server()
    client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=8,
                               messages=[{"role": "user", "content": "hi"}])
    r = httpx.post(url + "/v1/messages",
                   json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens: a positive integer is required"}}
    r = httpx.post(url + "/v1/messages", json={"model": "tiny", "max_tokens": 4,
                                               "messages": [{"role": "bot", "content": "hi"}]})
    assert r.status_code == 400 and "role" in r.json()["error"]["message"]
    for tools, says in (({"name": "f"}, "tools must be a list"),
                        ([{"description": "no name"}], "every tool needs a name")):
        r = httpx.post(url + "/v1/messages", json={"model": "tiny", "max_tokens": 4, "tools": tools,
                                                   "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and r.json()["error"]["message"] == says, r.text


def test_messages_blocks_become_chat_messages() -> None:
    msgs = anthropic_messages({"system": "sys", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": ""},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text",
                                                                       "text": "sunny"}]}]},
    ]})
    assert [(m.role, m.content) for m in msgs] == [
        ("system", "sys"), ("user", "weather?"), ("assistant", "Let me check."),
        ("tool", "sunny")]
    assert msgs[2].thinking == "hmm"
    assert msgs[2].tool_calls == [{"id": "t1", "function": {"name": "get_weather",
                                                            "arguments": {"city": "Paris"}}}]
    assert msgs[3].tool_name == "get_weather"
