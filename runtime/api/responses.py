"""``POST /v1/responses``: OpenAI's Responses API, stateless, as Ollama serves it.

A request (``input`` text or items, ``instructions``, ``tools``, ``text.format``,
``reasoning.effort``, ``max_output_tokens``) becomes a native chat run; the answer is a
``response`` object with ``message`` / ``function_call`` / ``reasoning`` output items, or, with
``stream``, the Responses event stream (``response.created`` … ``response.completed``, each
``event:`` + ``data:`` with a ``sequence_number``). Nothing is stored: ``previous_response_id``
and ``conversation`` are refused.
"""
from __future__ import annotations

import json
import secrets
import time
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from runtime.api.errors import ApiError, openai_body, to_api_error
from runtime.api.inference import Instant, Piece, start
from runtime.api.schemas import (
    ChatBody,
    Message,
    function_tools,
    number_field,
    parse_body,
    read_object,
)
from runtime.api.service import Service
from runtime.api.streaming import collect, sse_event, started, unless_disconnected
from runtime.api.thinking import think_from_reasoning_effort


def _text_of(content: Any, where: str) -> tuple[str, list[str]]:
    """Text and base64 images of an input message's content (a string or content parts)."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise ApiError(400, f"{where}: content must be a string or a list of content parts")
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            texts.append(str(part.get("text", "")))
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or ";base64," not in url:
                raise ApiError(400, f"{where}: only base64 data URLs are supported as images")
            images.append(url.split(";base64,", 1)[1])
        else:
            raise ApiError(400, f"{where}: unsupported content part type {kind!r}")
    return "".join(texts), images


def to_messages(raw: dict[str, Any]) -> list[Message]:
    """``instructions`` + ``input`` as native chat messages."""
    out: list[Message] = []
    instructions = raw.get("instructions")
    if isinstance(instructions, str) and instructions:
        out.append(Message(role="system", content=instructions))
    items = raw.get("input")
    if isinstance(items, str):
        return [*out, Message(role="user", content=items)]
    if not isinstance(items, list):
        raise ApiError(400, "input must be a string or a list of input items")
    names: dict[str, str] = {}
    thinking = ""
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where}: an input item must be an object")
        kind = item.get("type") or "message"
        if kind == "message":
            role = str(item.get("role", ""))
            if role == "developer":
                role = "system"
            if role not in ("system", "user", "assistant"):
                raise ApiError(400, f"{where}: unsupported role {role!r}")
            text, images = _text_of(item.get("content"), where)
            msg = Message(role=role, content=text, images=images or None)
            if role == "assistant" and thinking:
                msg.thinking, thinking = thinking, ""
            out.append(msg)
        elif kind == "function_call":
            try:
                args = json.loads(item.get("arguments") or "{}")
            except ValueError:
                raise ApiError(400, f"{where}: arguments are not JSON") from None
            call_id, name = str(item.get("call_id", "")), str(item.get("name", ""))
            names[call_id] = name
            call = {"id": call_id, "function": {"name": name, "arguments": args}}
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and last.tool_calls is not None:
                last.tool_calls.append(call)
            else:
                out.append(Message(role="assistant", content="", tool_calls=[call],
                                   thinking=thinking or None))
                thinking = ""
        elif kind == "function_call_output":
            output = item.get("output", "")
            text = output if isinstance(output, str) else _text_of(output, where)[0]
            out.append(Message(role="tool", content=text,
                               tool_name=names.get(str(item.get("call_id", ""))) or None))
        elif kind == "reasoning":
            summary = item.get("summary") or []
            thinking += "".join(str(s.get("text", "")) for s in summary if isinstance(s, dict))
        else:
            raise ApiError(400, f"{where}: unsupported input item type {kind!r}")
    return out


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    return function_tools(raw, accept=lambda t: t.get("type") == "function",
                          refusal="only function tools are supported", schema_key="parameters")


def _format(raw: dict[str, Any]) -> Any:
    fmt = (raw.get("text") or {}).get("format") if isinstance(raw.get("text"), dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        return fmt.get("schema") if isinstance(fmt.get("schema"), dict) else "json"
    if fmt.get("type") == "json_object":
        return "json"
    return None


def _options(raw: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for key, name in (("temperature", "temperature"), ("top_p", "top_p"),
                      ("max_output_tokens", "num_predict")):
        value = number_field(raw, key)
        if value is not None:
            opts[name] = value
    opts.setdefault("temperature", 1.0)
    opts.setdefault("top_p", 1.0)
    return opts


class _Shape:
    """The parts of a response object that echo the request."""

    def __init__(self, raw: dict[str, Any], model: str) -> None:
        self.id = "resp_" + secrets.token_hex(12)
        self.raw = raw
        self.model = model
        self.created = int(time.time())

    def response(self, status: str, output: list[dict[str, Any]],
                 usage: dict[str, Any] | None) -> dict[str, Any]:
        raw = self.raw
        fmt = (raw.get("text") or {}).get("format") if isinstance(raw.get("text"), dict) else None
        reasoning = raw.get("reasoning") if isinstance(raw.get("reasoning"), dict) else None
        return {
            "id": self.id, "object": "response", "created_at": self.created,
            "completed_at": int(time.time()) if status == "completed" else None,
            "status": status, "incomplete_details": None, "model": self.model,
            "previous_response_id": None, "instructions": raw.get("instructions") or None,
            "output": output, "error": None, "tools": raw.get("tools") or [],
            "tool_choice": "auto", "truncation": raw.get("truncation") or "disabled",
            "parallel_tool_calls": True,
            "text": {"format": fmt if isinstance(fmt, dict) else {"type": "text"}},
            "top_p": raw.get("top_p", 1.0) if raw.get("top_p") is not None else 1.0,
            "presence_penalty": 0, "frequency_penalty": 0, "top_logprobs": 0,
            "temperature": raw.get("temperature") if raw.get("temperature") is not None else 1.0,
            "reasoning": ({"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
                          if reasoning else None),
            "usage": usage, "max_output_tokens": raw.get("max_output_tokens"),
            "max_tool_calls": None, "store": False, "background": False,
            "service_tier": "default", "metadata": {}, "safety_identifier": None,
            "prompt_cache_key": None,
        }


def _usage(final: Any) -> dict[str, Any]:
    return {"input_tokens": final.prompt_eval_count, "output_tokens": final.eval_count,
            "total_tokens": final.prompt_eval_count + final.eval_count,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def _call_item(item_id: str, call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    fn = call.get("function", {})
    return {"id": item_id, "type": "function_call", "status": status,
            "call_id": call.get("id", ""), "name": fn.get("name", ""),
            "arguments": json.dumps(fn.get("arguments", {}))}


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}], "encrypted_content": text}


def router(svc: Service) -> APIRouter:
    r = APIRouter(prefix="/v1")

    @r.post("/responses")
    async def responses(request: Request) -> Response:
        begun = time.perf_counter_ns()
        raw = await read_object(request)
        if raw.get("previous_response_id") or raw.get("conversation"):
            raise ApiError(400, "previous_response_id and conversation are not supported: "
                                "this server is stateless, send the whole input")
        reasoning = raw.get("reasoning")
        think = think_from_reasoning_effort(
            reasoning.get("effort") if isinstance(reasoning, dict) else None)
        stream = bool(raw.get("stream"))
        body = parse_body({"model": raw.get("model", ""), "tools": _tools(raw.get("tools")),
                           "options": _options(raw), "format": _format(raw), "stream": stream,
                           "think": think}, ChatBody)
        body.messages = to_messages(raw)
        if not body.messages:
            raise ApiError(400, "input is required")
        run = await unless_disconnected(request.receive, start(svc, body, started=begun))
        assert not isinstance(run, Instant)
        shape = _Shape(raw, body.model)
        if not stream:
            done = await collect(request.receive, run)
            final = done.final
            output: list[dict[str, Any]] = []
            if done.thinking:
                output.append(_reasoning_item("rs_" + shape.id[5:], done.thinking))
            if done.tool_calls:
                output += [_call_item(f"fc_{shape.id[5:]}_{i}", c)
                           for i, c in enumerate(done.tool_calls)]
            else:
                output.append(_message_item("msg_" + shape.id[5:], done.text))
            out = shape.response("completed", output, _usage(final))
            if final.done_reason == "length":
                out["status"] = "incomplete"
                out["incomplete_details"] = {"reason": "max_output_tokens"}
            return JSONResponse(out)
        pieces = await started(run)
        return StreamingResponse(_events(shape, pieces), media_type="text/event-stream")

    return r


async def _events(shape: _Shape, pieces: AsyncIterator[Piece]) -> AsyncIterator[bytes]:
    """The Responses event stream for one run."""
    seq = 0

    def ev(kind: str, **data: Any) -> bytes:
        nonlocal seq
        data = {"type": kind, "sequence_number": seq, **data}
        seq += 1
        return sse_event(kind, data)

    done: list[dict[str, Any]] = []
    index = 0
    msg_id = "msg_" + shape.id[5:]
    text = ""
    text_open = False
    reasoning_id = "rs_" + shape.id[5:]
    thinking = ""
    reasoning_open = False

    def close_reasoning() -> list[bytes]:
        nonlocal reasoning_open, index, thinking
        if not reasoning_open:
            return []
        reasoning_open = False
        item = _reasoning_item(reasoning_id, thinking)
        done.append(item)
        out = [ev("response.reasoning_summary_text.done", item_id=reasoning_id,
                  output_index=index, summary_index=0, text=thinking),
               ev("response.output_item.done", output_index=index, item=item)]
        index += 1
        return out

    def close_text() -> list[bytes]:
        nonlocal text_open, index
        if not text_open:
            return []
        text_open = False
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = _message_item(msg_id, text)
        done.append(item)
        out = [ev("response.output_text.done", item_id=msg_id, output_index=index,
                  content_index=0, text=text, logprobs=[]),
               ev("response.content_part.done", item_id=msg_id, output_index=index,
                  content_index=0, part=part),
               ev("response.output_item.done", output_index=index, item=item)]
        index += 1
        return out

    try:
        yield ev("response.created", response=shape.response("in_progress", [], None))
        yield ev("response.in_progress", response=shape.response("in_progress", [], None))
        async for piece in pieces:
            if piece.thinking:
                if not reasoning_open:
                    reasoning_open = True
                    yield ev("response.output_item.added", output_index=index,
                             item={"id": reasoning_id, "type": "reasoning", "summary": []})
                thinking += piece.thinking
                yield ev("response.reasoning_summary_text.delta", item_id=reasoning_id,
                         output_index=index, summary_index=0, delta=piece.thinking)
            if piece.content:
                for b in close_reasoning():
                    yield b
                if not text_open:
                    text_open = True
                    yield ev("response.output_item.added", output_index=index,
                             item={**_message_item(msg_id, "", "in_progress"), "content": []})
                    yield ev("response.content_part.added", item_id=msg_id, output_index=index,
                             content_index=0, part={"type": "output_text", "text": "",
                                                    "annotations": [], "logprobs": []})
                text += piece.content
                yield ev("response.output_text.delta", item_id=msg_id, output_index=index,
                         content_index=0, delta=piece.content, logprobs=[])
            for call in piece.tool_calls:
                for b in close_reasoning() + close_text():
                    yield b
                item_id = f"fc_{shape.id[5:]}_{index}"
                item = _call_item(item_id, call)
                yield ev("response.output_item.added", output_index=index,
                         item={**item, "status": "in_progress", "arguments": ""})
                yield ev("response.function_call_arguments.delta", item_id=item_id,
                         output_index=index, delta=item["arguments"])
                yield ev("response.function_call_arguments.done", item_id=item_id,
                         output_index=index, arguments=item["arguments"])
                yield ev("response.output_item.done", output_index=index, item=item)
                done.append(item)
                index += 1
            if piece.final is not None:
                for b in close_reasoning() + close_text():
                    yield b
                final = shape.response("completed", done, _usage(piece.final))
                if piece.final.done_reason == "length":
                    final["status"] = "incomplete"
                    final["incomplete_details"] = {"reason": "max_output_tokens"}
                    yield ev("response.incomplete", response=final)
                else:
                    yield ev("response.completed", response=final)
    except Exception as e:  # noqa: BLE001 - the 200 is out: report in the stream
        err = to_api_error(e)
        failed = shape.response("failed", done, None)
        failed["error"] = {"code": "server_error", "message": err.message}
        yield ev("response.failed", response=failed)
        yield sse_event("error", {"type": "error", **openai_body(err.status, err.message)["error"]})
    finally:
        await pieces.aclose()  # type: ignore[attr-defined]
