"""OpenAI-compatible routes under ``/v1``, translated the way Ollama's openai package does.

Requests become native chat/generate/embed runs; answers are OpenAI objects, streams are
server-sent events ending with ``data: [DONE]``. Defaults follow Ollama's translation:
``temperature`` and ``top_p`` default to 1.0 when the request leaves them out.
"""
from __future__ import annotations

import asyncio
import base64
import json
import random
import struct
import time
from typing import Any, AsyncIterator, Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from runtime.api.errors import ApiError, openai_body, to_api_error
from runtime.api.images import openai_content
from runtime.api.inference import Instant, Piece, Run, run_embed, start
from runtime.api.schemas import (
    ChatBody,
    EmbedBody,
    GenerateBody,
    Message,
    number_field,
    parse_body,
    read_object,
)
from runtime.api.service import Service
from runtime.api.streaming import collect, sse_data, started, unless_disconnected
from runtime.api.thinking import think_from_reasoning_effort
from runtime.errors import LlmcrateError
from runtime.models.names import parse_name
from runtime.serve.engine import Chunk

FINGERPRINT = "fp_ollama"


def _stops(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(value)
    raise ApiError(400, "invalid type for 'stop' field")


def _options(body: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    stops = _stops(body.get("stop"))
    if stops is not None:
        opts["stop"] = stops
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None:
        opts["num_predict"] = number_field({"max_tokens": max_tokens}, "max_tokens")
    temperature = number_field(body, "temperature")
    opts["temperature"] = 1.0 if temperature is None else temperature
    top_p = number_field(body, "top_p")
    opts["top_p"] = top_p if top_p else 1.0
    for key in ("seed", "frequency_penalty", "presence_penalty"):
        value = number_field(body, key)
        if value is not None:
            opts[key] = value
    return opts


def _format(body: dict[str, Any]) -> Any:
    rf = body.get("response_format")
    if not isinstance(rf, dict):
        return None
    kind = str(rf.get("type", "")).strip().lower()
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else None
    return None


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "[] is too short - 'messages'")
    calls_by_id: dict[str, str] = {}
    out: list[Message] = []
    n_images = 0
    for m in raw:
        if not isinstance(m, dict):
            raise ApiError(400, "invalid message format")
        role = str(m.get("role", ""))
        if role == "developer":   # OpenAI's newer name for the system role
            role = "system"
        tool_calls = None
        if m.get("tool_calls"):
            tool_calls = []
            for tc in m["tool_calls"]:
                fn = (tc or {}).get("function") or {}
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except ValueError:
                    raise ApiError(400, "invalid tool call arguments") from None
                calls_by_id[str(tc.get("id", ""))] = fn.get("name", "")
                tool_calls.append({"function": {"name": fn.get("name", ""), "arguments": args}})
        tool_name = None
        if role == "tool":
            tool_name = m.get("name") or calls_by_id.get(str(m.get("tool_call_id", ""))) or None
        content = m.get("content")
        if isinstance(content, str) or content is None:
            if content is None and tool_calls is None:
                raise ApiError(400, "invalid message content type: <nil>")
            out.append(Message(role=role, content=content or "", tool_calls=tool_calls,
                               tool_name=tool_name))
        elif isinstance(content, list):
            text, images = openai_content(content, first_index=n_images)
            n_images += len(images)
            out.append(Message(role=role, content=text, images=images or None,
                               tool_calls=tool_calls, tool_name=tool_name))
        else:
            raise ApiError(400, f"invalid message content type: {type(content).__name__}")
    return out


def _openai_calls(calls: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(calls):
        fn = c.get("function", {})
        out.append({"id": c.get("id", ""), "index": start + i, "type": "function",
                    "function": {"name": fn.get("name", ""),
                                 "arguments": json.dumps(fn.get("arguments", {}))}})
    return out


def reasoning_think(raw: dict[str, Any]) -> Any:
    """``reasoning: {effort}`` (preferred) or ``reasoning_effort`` as Ollama's think value."""
    reasoning = raw.get("reasoning")
    if isinstance(reasoning, dict):
        return think_from_reasoning_effort(reasoning.get("effort"))
    return think_from_reasoning_effort(raw.get("reasoning_effort"))


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def router(svc: Service) -> APIRouter:
    r = APIRouter(prefix="/v1")

    @r.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        begun = time.perf_counter_ns()
        raw = await read_object(request)
        stream = bool(raw.get("stream"))
        include_usage = bool((raw.get("stream_options") or {}).get("include_usage"))
        body = parse_body({"model": raw.get("model", ""), "tools": raw.get("tools") or None,
                           "options": _options(raw), "format": _format(raw), "stream": stream,
                           "think": reasoning_think(raw), **_logprob_fields(raw)},
                          ChatBody)
        body.messages = _messages(raw.get("messages"))
        run = await unless_disconnected(request.receive, start(svc, body, started=begun))
        assert not isinstance(run, Instant)   # messages are never empty here
        cid = f"chatcmpl-{random.randrange(1000)}"
        created = int(time.time())
        model = body.model
        if not stream:
            done = await collect(request.receive, run)
            final = done.final
            finish = "tool_calls" if done.tool_calls else final.done_reason
            message: dict[str, Any] = {"role": "assistant", "content": done.text}
            if done.thinking:
                message["reasoning"] = done.thinking
            if done.tool_calls:
                message["tool_calls"] = _openai_calls(done.tool_calls)
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
            if body.logprobs:
                choice["logprobs"] = {"content": done.logprobs}
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": FINGERPRINT, "choices": [choice],
                "usage": _usage(final.prompt_eval_count, final.eval_count),
            })

        def chunk(delta: dict[str, Any], finish: str | None,
                  logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            if logprobs:
                choice["logprobs"] = {"content": logprobs}
            return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model, "system_fingerprint": FINGERPRINT, "choices": [choice]}

        sent_calls = 0

        def chunks(piece: Piece) -> list[dict[str, Any]]:
            nonlocal sent_calls
            delta: dict[str, Any] = {"role": "assistant", "content": piece.content}
            if piece.thinking:
                delta["reasoning"] = piece.thinking
            if piece.tool_calls:
                delta["tool_calls"] = _openai_calls(piece.tool_calls, sent_calls)
                sent_calls += len(piece.tool_calls)
            final = piece.final
            if final is None:
                return [chunk(delta, None, piece.logprobs)]
            finish = "tool_calls" if sent_calls else final.done_reason
            return [chunk(delta, finish, piece.logprobs),
                    *([_usage_chunk(chunk(delta, finish), final)] if include_usage else [])]

        return await _event_stream(run, chunks)

    @r.post("/completions")
    async def completions(request: Request) -> Response:
        begun = time.perf_counter_ns()
        raw = await read_object(request)
        prompt = raw.get("prompt", "")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "prompt must be a string")
        stream = bool(raw.get("stream"))
        include_usage = bool((raw.get("stream_options") or {}).get("include_usage"))
        body = parse_body({"model": raw.get("model", ""), "prompt": prompt,
                           "suffix": raw.get("suffix") or "", "options": _options(raw),
                           "stream": stream}, GenerateBody)
        if not body.prompt:
            raise ApiError(400, "prompt is required")
        run = await unless_disconnected(request.receive, start(svc, body, started=begun))
        assert not isinstance(run, Instant)
        cid = f"cmpl-{random.randrange(1000)}"
        model = body.model
        if not stream:
            done = await collect(request.receive, run)
            final = done.final
            return JSONResponse({
                "id": cid, "object": "text_completion", "created": int(time.time()),
                "model": model, "system_fingerprint": FINGERPRINT,
                "choices": [{"text": done.text, "index": 0, "finish_reason": final.done_reason}],
                "usage": _usage(final.prompt_eval_count, final.eval_count),
            })

        def chunk(text: str, finish: str | None) -> dict[str, Any]:
            return {"id": cid, "object": "text_completion", "created": int(time.time()),
                    "choices": [{"text": text, "index": 0, "finish_reason": finish}],
                    "model": model, "system_fingerprint": FINGERPRINT}

        def chunks(piece: Piece) -> list[dict[str, Any]]:
            final = piece.final
            first = chunk(piece.content, final.done_reason if final else None)
            if final is None or not include_usage:
                return [first]
            return [first, _usage_chunk(chunk("", final.done_reason), final)]

        return await _event_stream(run, chunks)

    @r.get("/models")
    async def models() -> dict[str, Any]:
        from runtime.models.show import list_models_json

        items = await asyncio.to_thread(list_models_json, svc.store)
        return {"object": "list", "data": [_model_obj(m["name"], m["modified_at"]) for m in items]}

    @r.get("/models/{model:path}")
    async def model(model: str) -> dict[str, Any]:
        info = await svc.model_info(model)
        return {"id": model, "object": "model", "created": int(info.modified_at),
                "owned_by": _owner(model)}

    @r.post("/embeddings")
    async def embeddings(request: Request) -> Response:
        begun = time.perf_counter_ns()
        raw = await read_object(request)
        fmt = raw.get("encoding_format") or "float"
        if str(fmt).lower() not in ("float", "base64"):
            raise ApiError(400, f"Invalid value for 'encoding_format' = {fmt}. "
                                "Supported values: ['float', 'base64'].")
        inputs = raw.get("input")
        if inputs is None or inputs == "" or inputs == []:
            raise ApiError(400, "invalid input")
        if isinstance(inputs, list) and not all(isinstance(x, str) for x in inputs):
            raise ApiError(400, "invalid input type: token arrays are not supported")
        dims = raw.get("dimensions")
        body = EmbedBody(model=str(raw.get("model", "")), input=inputs,
                         dimensions=dims if isinstance(dims, int) else None)
        result = await unless_disconnected(request.receive, run_embed(svc, body, started=begun))
        data = []
        for i, vec in enumerate(result.vectors):
            emb: Any = vec
            if str(fmt).lower() == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "embedding": emb, "index": i})
        return JSONResponse({"object": "list", "data": data, "model": body.model,
                             "usage": {"prompt_tokens": result.prompt_eval_count,
                                       "total_tokens": result.prompt_eval_count}})

    return r


def _owner(name: str) -> str:
    try:
        return parse_name(name).namespace
    except LlmcrateError:
        return "library"


def _model_obj(name: str, modified: str) -> dict[str, Any]:
    import datetime as dt

    try:
        created = int(dt.datetime.fromisoformat(modified.replace("Z", "+00:00")).timestamp())
    except ValueError:
        created = 0
    return {"id": name, "object": "model", "created": created, "owned_by": _owner(name)}


async def _event_stream(run: Run, chunks: Callable[[Piece], list[dict[str, Any]]]
                        ) -> Response:
    """OpenAI's server-sent events for a run: ``chunks`` of each piece, then ``[DONE]``; an
    error after the 200 went out becomes an error event."""
    pieces = await started(run)

    async def events() -> AsyncIterator[bytes]:
        try:
            async for piece in pieces:
                for obj in chunks(piece):
                    yield sse_data(obj)
            yield b"data: [DONE]\n\n"
        except Exception as e:  # noqa: BLE001 - headers are out: report in the stream
            err = to_api_error(e)
            yield sse_data(openai_body(err.status, err.message))
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(events(), media_type="text/event-stream")


def _usage_chunk(chunk: dict[str, Any], final: Chunk) -> dict[str, Any]:
    """``stream_options.include_usage``: a last chunk with no choices and the usage."""
    return {**chunk, "choices": [], "usage": _usage(final.prompt_eval_count, final.eval_count)}


def _logprob_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``logprobs`` (bool) and ``top_logprobs`` (0-20) as the chat body's fields."""
    logprobs = raw.get("logprobs")
    top = raw.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise ApiError(400, "invalid type for 'logprobs' field")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int)):
        raise ApiError(400, "invalid type for 'top_logprobs' field")
    return {"logprobs": bool(logprobs), "top_logprobs": int(top or 0) if logprobs else 0}
