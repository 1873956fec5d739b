"""The one place that turns errors into HTTP answers, in Ollama's or OpenAI's shape.

Ollama answers ``{"error": "..."}``; the ``/v1`` routes answer OpenAI's
``{"error": {"message", "type", "param", "code"}}`` (Ollama's ``openai.NewError``), and
``/v1/messages`` Anthropic's ``{"type": "error", "error": {"type", "message"}}``.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from ..errors import (DigestMismatch, EngineError, ImageError, InvalidName, LlmcrateError,
                      ModelfileError, ModelNotFound, ServerBusy, TemplateError)

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answer with its HTTP status; the message is what the client sees."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_for(err: LlmcrateError) -> int:
    """HTTP status for a domain error (Ollama's handlers: handleScheduleError and friends)."""
    if isinstance(err, ModelNotFound):
        return 404
    if isinstance(err, ServerBusy):
        return 503
    if isinstance(err, (InvalidName, DigestMismatch, ModelfileError, ImageError)):
        return 400
    if isinstance(err, ValueError):          # runtime.options.OptionError
        return 400
    if isinstance(err, (EngineError, TemplateError)):
        return 500
    return 500


def to_api_error(err: BaseException) -> ApiError:
    if isinstance(err, ApiError):
        return err
    if isinstance(err, LlmcrateError):
        return ApiError(status_for(err), str(err))
    logger.exception("unexpected error", exc_info=err)
    return ApiError(500, f"internal error: {err}")


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
    api = to_api_error(err)
    return JSONResponse(error_body(request, api.status, api.message), status_code=api.status)


def error_line(err: BaseException) -> bytes:
    """An error in the middle of an NDJSON stream (after the 200 went out)."""
    return (json.dumps({"error": to_api_error(err).message}) + "\n").encode()
