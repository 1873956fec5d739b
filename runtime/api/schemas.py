"""Request bodies of the native API (Ollama's ``api/types.go``), checked with pydantic.

Unknown fields are ignored, as Go's ``encoding/json`` does. Responses are plain dicts built
by the routers, so their field order and omissions match Ollama's JSON.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtime.api.errors import ApiError

#: JSON bodies larger than this are refused (blob uploads stream and are not limited).
MAX_JSON_BODY = 64 << 20


# typing.Optional/List/Dict: pydantic evaluates these annotations at runtime (Python 3.9).
class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Message(_Body):
    role: str
    content: Optional[str] = ""
    thinking: Optional[str] = None
    images: Optional[List[str]] = None
    tool_calls: Optional[List[Dict[str, Any]]] = None
    tool_name: Optional[str] = None


class GenerateBody(_Body):
    model: str = ""
    prompt: str = ""
    suffix: str = ""
    system: str = ""
    template: str = ""
    context: Optional[List[int]] = None
    stream: Optional[bool] = None
    raw: bool = False
    format: Any = None
    images: Optional[List[str]] = None
    options: Optional[Dict[str, Any]] = None
    keep_alive: Any = None
    think: Any = None
    logprobs: bool = False
    top_logprobs: int = 0


class ChatBody(_Body):
    model: str = ""
    messages: List[Message] = Field(default_factory=list)
    tools: Optional[List[Dict[str, Any]]] = None
    format: Any = None
    options: Optional[Dict[str, Any]] = None
    stream: Optional[bool] = None
    keep_alive: Any = None
    think: Any = None
    logprobs: bool = False
    top_logprobs: int = 0


class EmbedBody(_Body):
    model: str = ""
    input: Any = None
    truncate: Optional[bool] = None
    options: Optional[Dict[str, Any]] = None
    keep_alive: Any = None
    dimensions: Optional[int] = None


class EmbeddingsBody(_Body):
    model: str = ""
    prompt: str = ""
    options: Optional[Dict[str, Any]] = None
    keep_alive: Any = None


class NameBody(_Body):
    model: str = ""
    name: str = ""
    verbose: bool = False
    insecure: bool = False
    stream: Optional[bool] = None

    @property
    def target(self) -> str:
        return self.model or self.name


class CopyBody(_Body):
    source: str = ""
    destination: str = ""


class CreateBody(_Body):
    model: str = ""
    name: str = ""
    from_: Optional[str] = Field(default=None, alias="from")
    files: Optional[Dict[str, str]] = None
    adapters: Optional[Dict[str, str]] = None
    template: Optional[str] = None
    system: Optional[str] = None
    parameters: Optional[Dict[str, Any]] = None
    license: Any = None
    messages: Optional[List[Dict[str, Any]]] = None
    quantize: Optional[str] = None
    modelfile: Optional[str] = None
    stream: Optional[bool] = None


def number_field(raw: dict[str, Any], key: str) -> float | None:
    """A ``/v1`` request's numeric field (None when absent); 400 for anything but a number."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, f"invalid type for '{key}' field")
    return value


def function_tool(name: str, description: Any, parameters: Any) -> dict[str, Any]:
    """A tool as a chat body carries it (Ollama's ``api.Tool``), from the ``/v1`` formats'
    function tools (Anthropic's ``input_schema`` and OpenAI Responses' ``parameters``)."""
    return {"type": "function", "function": {
        "name": name, "description": description or "",
        "parameters": parameters or {"type": "object", "properties": {}}}}


def function_tools(raw: Any, *, accept: Callable[[dict[str, Any]], bool], refusal: str,
                   schema_key: str) -> list[dict[str, Any]] | None:
    """A ``/v1`` body's ``tools`` list as chat-body tools (:func:`function_tool`); a tool that
    is not a dict or that ``accept`` refuses is a 400 saying ``refusal``."""
    if not raw:
        return None
    if not isinstance(raw, list):
        raise ApiError(400, "tools must be a list")
    out = []
    for t in raw:
        if not isinstance(t, dict) or not accept(t):
            raise ApiError(400, refusal)
        out.append(function_tool(t.get("name", ""), t.get("description"), t.get(schema_key)))
    return out


B = TypeVar("B", bound=BaseModel)


async def read_json(request: Request) -> Any:
    """The request's JSON body; ApiError 400 for a missing/bad body, 413 when too large."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_JSON_BODY:
        raise ApiError(413, f"request body too large (limit {MAX_JSON_BODY >> 20} MiB)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise ApiError(413, f"request body too large (limit {MAX_JSON_BODY >> 20} MiB)")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "missing request body")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"invalid JSON in request body: {e}") from None


async def read_object(request: Request) -> dict[str, Any]:
    """The request's JSON body, which must be an object (the ``/v1`` routes read it as such)."""
    raw = await read_json(request)
    if not isinstance(raw, dict):
        raise ApiError(400, "request body must be a JSON object")
    return raw


def parse_body(data: Any, model: type[B]) -> B:
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ApiError(400, f'invalid value for "{where}": {first.get("msg", "invalid")}') from None


async def read_body(request: Request, model: type[B]) -> B:
    return parse_body(await read_json(request), model)
