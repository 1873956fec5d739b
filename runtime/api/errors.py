"""The one place that turns errors into HTTP answers, in Ollama's or OpenAI's shape.

Ollama answers ``{"error": "..."}``; the ``/v1`` routes answer OpenAI's
``{"error": {"message", "type", "param", "code"}}`` (Ollama's ``openai.NewError``), and
``/v1/messages`` Anthropic's ``{"type": "error", "error": {"type", "message"}}``.

Clients never see server paths: every message is scrubbed here (:func:`scrub_paths`) — a blob
becomes the model(s) using it, anything else in the models dir "the models dir", any other
absolute path its last component. The log keeps the full message.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse

from runtime.errors import (
    DigestMismatch,
    EngineError,
    GGUFError,
    ImageError,
    InvalidName,
    InvalidRequest,
    LlmcrateError,
    ModelfileError,
    ModelNotFound,
    ReadOnlyStore,
    ServerBusy,
    StoreError,
    TemplateError,
    UnsupportedCapability,
)
from runtime.serve.runner.process import RequestFailed

if TYPE_CHECKING:
    from runtime.models.store import Store

logger = logging.getLogger(__name__)

#: an absolute filesystem path: "/" not preceded by a name, URL or path character
_ABS_PATH = re.compile(r"(?<![\w.:/~%-])/[^\s'\"`,;()<>\[\]{}]+")
_BLOB = re.compile(r"/blobs/(sha256[-:][0-9a-fA-F]{64})(?:-partial\S*)?$")


class ApiError(Exception):
    """An error answer with its HTTP status; the message is what the client sees."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_for(err: LlmcrateError, *, request_input: bool = False) -> int:
    """HTTP status for a domain error (Ollama's handlers: handleScheduleError and friends).

    Args:
        err: the error.
        request_input: the error came from reading what the request itself supplied (``/api/create``:
            its blobs, GGUF files and template), so a missing blob, a file that is not a GGUF or a
            template that does not parse is the client's 400 — except a read-only store (500).
    """
    if isinstance(err, ModelNotFound):
        return 404
    if request_input and isinstance(err, (StoreError, GGUFError, TemplateError)):
        return 500 if isinstance(err, ReadOnlyStore) else 400
    if isinstance(err, ServerBusy):
        return 503
    if isinstance(err, RequestFailed):       # the runner said which (a bad format: 400)
        return err.status
    if isinstance(err, (InvalidName, InvalidRequest, UnsupportedCapability, DigestMismatch,
                        ModelfileError, ImageError)):
        return 400
    if isinstance(err, ValueError):          # runtime.options.OptionError
        return 400
    if isinstance(err, (EngineError, TemplateError)):
        return 500
    return 500


def _models_using(store: Store, digest: str) -> list[str]:
    digest = digest.replace("-", ":", 1)
    try:
        return [e.name.display for e in store.list_models()
                if any(layer.digest == digest for layer in e.manifest.layers)]
    except Exception:                          # a scrub must never fail the answer
        logger.debug("could not map %s to models", digest, exc_info=True)
        return []


def scrub_paths(message: str, *, store: Store | None = None) -> str:
    """``message`` with every absolute server path replaced by what a client may know."""
    root = str(store.root) if store is not None else None

    def replace(m: re.Match[str]) -> str:
        path = m.group(0).rstrip(".")
        tail = m.group(0)[len(path):]
        if path.startswith(("/api/", "/v1/")):     # our own routes, named in some answers
            return m.group(0)
        blob = _BLOB.search(path)
        if blob:
            names = _models_using(store, blob.group(1)) if store is not None else []
            what = ", ".join(f'"{n}"' for n in names) if names else blob.group(1)[:19] + "…"
            return f"model {what}{tail}" if names else f"blob {what}{tail}"
        if m.string[:m.start()].endswith("models dir "):   # "models dir /x is read-only"
            return "(on the server)" + tail
        if root and (path == root or path.startswith(root.rstrip("/") + "/")):
            return "the models dir" + tail
        return (Path(path).name or "(path)") + tail

    return _ABS_PATH.sub(replace, message)


def to_api_error(err: BaseException, *, store: Store | None = None) -> ApiError:
    """The client's view of ``err``: its HTTP status and a message without server paths."""
    if isinstance(err, ApiError):
        api = err
    elif isinstance(err, LlmcrateError):
        api = ApiError(status_for(err), str(err))
    else:
        logger.error("unexpected error", exc_info=err)
        api = ApiError(500, f"internal error: {err}")
    clean = scrub_paths(api.message, store=store)
    if clean == api.message:
        return api
    logger.warning("%s", api.message)          # the log keeps the paths the client does not see
    return ApiError(api.status, clean)


def is_openai(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def openai_body(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def is_anthropic(request: Request) -> bool:
    return request.url.path.rstrip("/") == "/v1/messages"


def anthropic_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error object (``/v1/messages``)."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 429: "rate_limit_error", 503: "overloaded_error"}.get(
        status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_body(request: Request, status: int, message: str) -> dict[str, Any]:
    if is_anthropic(request):
        return anthropic_body(status, message)
    if is_openai(request):
        return openai_body(status, message)
    return {"error": message}


def error_response(request: Request, err: BaseException) -> JSONResponse:
    api = to_api_error(err, store=getattr(request.app.state, "store", None))
    return JSONResponse(error_body(request, api.status, api.message), status_code=api.status)


def error_line(err: BaseException, *, store: Store | None = None) -> bytes:
    """An error in the middle of an NDJSON stream (after the 200 went out)."""
    return (json.dumps({"error": to_api_error(err, store=store).message}) + "\n").encode()
