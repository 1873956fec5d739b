"""``POST /v1/messages``: Anthropic's Messages API, as Ollama serves it for Claude clients.

``system`` (text or text blocks), ``messages`` with text / image / ``tool_use`` /
``tool_result`` / ``thinking`` blocks, ``tools`` (``input_schema``), ``max_tokens``,
``stop_sequences``, ``temperature``/``top_p``/``top_k``, ``thinking`` become a native chat run;
the answer is a ``message`` object or, with ``stream``, Anthropic's server-sent events
(``message_start``, ``content_block_start``/``_delta``/``_stop``, ``message_delta``,
``message_stop``). Errors use Anthropic's shape (see :func:`runtime.api.errors.anthropic_body`).
"""
from __future__ import annotations

import json
import secrets
import time
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from runtime.api.errors import ApiError, anthropic_body, to_api_error
from runtime.api.inference import Instant, Piece, start
from runtime.api.schemas import ChatBody, Message, function_tools, parse_body, read_object
from runtime.api.service import Service
from runtime.api.streaming import collect, sse_event, started, unless_disconnected


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise ApiError(400, f"{where}: content must be a string or a list of content blocks")
    return content


def _image(block: dict[str, Any], where: str) -> str:
    source = block.get("source") or {}
    if source.get("type") != "base64" or not isinstance(source.get("data"), str):
        raise ApiError(400, f"{where}: only base64 image sources are supported")
    return source["data"]


def _tool_result_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(b.get("text", "")) for b in _blocks(content, where)
                   if b.get("type") == "text")


def to_messages(raw: dict[str, Any]) -> list[Message]:
    out: list[Message] = []
    system = raw.get("system")
    if isinstance(system, list):
        system = "".join(str(b.get("text", "")) for b in system
                         if isinstance(b, dict) and b.get("type") == "text")
    if system is not None and not isinstance(system, str):
        raise ApiError(400, "system must be a string or a list of text blocks")
    if system:
        out.append(Message(role="system", content=system))
    msgs = raw.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "messages: at least one message is required")
    names: dict[str, str] = {}
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise ApiError(400, f"{where}: role must be \"user\" or \"assistant\"")
        role = m["role"]
        texts: list[str] = []
        images: list[str] = []
        calls: list[dict[str, Any]] = []
        thinking = ""
        for block in _blocks(m.get("content"), where):
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text", "")))
            elif kind == "image":
                images.append(_image(block, where))
            elif kind == "tool_use" and role == "assistant":
                names[str(block.get("id", ""))] = str(block.get("name", ""))
                calls.append({"id": str(block.get("id", "")), "function": {
                    "name": str(block.get("name", "")), "arguments": block.get("input") or {}}})
            elif kind == "tool_result" and role == "user":
                out.append(Message(role="tool", content=_tool_result_text(
                    block.get("content"), where),
                    tool_name=names.get(str(block.get("tool_use_id", ""))) or None))
            elif kind == "thinking" and role == "assistant":
                thinking += str(block.get("thinking", ""))
            elif kind == "redacted_thinking":
                continue
            else:
                raise ApiError(400, f"{where}: unsupported content block {kind!r} for {role}")
        if texts or images or calls or thinking or not m.get("content"):
            out.append(Message(role=role, content="".join(texts), images=images or None,
                               tool_calls=calls or None, thinking=thinking or None))
    return out


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    return function_tools(raw, accept=lambda t: bool(t.get("name")), refusal="every tool needs a name",
                          schema_key="input_schema")


def _options(raw: dict[str, Any]) -> dict[str, Any]:
    max_tokens = raw.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ApiError(400, "max_tokens: a positive integer is required")
    opts: dict[str, Any] = {"num_predict": max_tokens}
    for key, name in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k")):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ApiError(400, f"{key}: must be a number")
        opts[name] = value
    stops = raw.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise ApiError(400, "stop_sequences: must be a list of strings")
        opts["stop"] = stops
    return opts


def _think(raw: dict[str, Any]) -> Any:
    thinking = raw.get("thinking")
    if not isinstance(thinking, dict):
        return None
    return thinking.get("type") == "enabled"


def stop_reason(done_reason: str | None, tool_use: bool) -> str:
    if tool_use:
        return "tool_use"
    return {"stop": "end_turn", "length": "max_tokens"}.get(done_reason or "", "stop_sequence")


def _tool_block(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function", {})
    return {"type": "tool_use", "id": call.get("id") or "toolu_" + secrets.token_hex(12),
            "name": fn.get("name", ""), "input": fn.get("arguments", {})}


def router(svc: Service) -> APIRouter:
    r = APIRouter(prefix="/v1")

    @r.post("/messages")
    async def messages(request: Request) -> Response:
        begun = time.perf_counter_ns()
        raw = await read_object(request)
        stream = bool(raw.get("stream"))
        body = parse_body({"model": raw.get("model", ""), "tools": _tools(raw.get("tools")),
                           "options": _options(raw), "stream": stream, "think": _think(raw)},
                          ChatBody)
        body.messages = to_messages(raw)
        run = await unless_disconnected(request.receive, start(svc, body, started=begun))
        assert not isinstance(run, Instant)
        mid = "msg_" + secrets.token_hex(12)
        if not stream:
            done = await collect(request.receive, run)
            final = done.final
            content: list[dict[str, Any]] = []
            if done.thinking:
                content.append({"type": "thinking", "thinking": done.thinking, "signature": ""})
            if done.text:
                content.append({"type": "text", "text": done.text})
            content += [_tool_block(c) for c in done.tool_calls]
            return JSONResponse({
                "id": mid, "type": "message", "role": "assistant", "model": body.model,
                "content": content,
                "stop_reason": stop_reason(final.done_reason, bool(done.tool_calls)),
                "stop_sequence": None,
                "usage": {"input_tokens": final.prompt_eval_count,
                          "output_tokens": final.eval_count}})
        pieces = await started(run)
        return StreamingResponse(_events(mid, body.model, pieces),
                                 media_type="text/event-stream")

    return r


async def _events(mid: str, model: str, pieces: AsyncIterator[Piece]) -> AsyncIterator[bytes]:
    index = 0
    open_kind: str | None = None      # "thinking" or "text": the block being streamed
    used_tools = False

    def close() -> list[bytes]:
        nonlocal open_kind, index
        if open_kind is None:
            return []
        out = []
        if open_kind == "thinking":
            out.append(sse_event("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "signature_delta", "signature": ""}}))
        out.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        open_kind = None
        index += 1
        return out

    def open_block(kind: str) -> list[bytes]:
        nonlocal open_kind
        if open_kind == kind:
            return []
        out = close()
        open_kind = kind
        block = ({"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking"
                 else {"type": "text", "text": ""})
        out.append(sse_event("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": block}))
        return out

    try:
        first = True
        async for piece in pieces:
            if first:
                first = False
                yield sse_event("message_start", {"type": "message_start", "message": {
                    "id": mid, "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0}}})
            if piece.thinking:
                for b in open_block("thinking"):
                    yield b
                yield sse_event("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "thinking_delta", "thinking": piece.thinking}})
            if piece.content:
                for b in open_block("text"):
                    yield b
                yield sse_event("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": piece.content}})
            for call in piece.tool_calls:
                used_tools = True
                for b in close():
                    yield b
                block = _tool_block(call)
                yield sse_event("content_block_start", {
                    "type": "content_block_start", "index": index,
                    "content_block": {**block, "input": {}}})
                yield sse_event("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
                yield sse_event("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            final = piece.final
            if final is not None:
                for b in close():
                    yield b
                yield sse_event("message_delta", {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason(final.done_reason, used_tools),
                              "stop_sequence": None},
                    "usage": {"input_tokens": final.prompt_eval_count,
                              "output_tokens": final.eval_count}})
                yield sse_event("message_stop", {"type": "message_stop"})
    except Exception as e:  # noqa: BLE001 - the 200 is out: report in the stream
        err = to_api_error(e)
        yield sse_event("error", anthropic_body(err.status, err.message))
    finally:
        await pieces.aclose()  # type: ignore[attr-defined]
