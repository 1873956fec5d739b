"""The HTTP API: Ollama's native routes and the OpenAI-compatible ``/v1`` routes.

:func:`create_app` builds the FastAPI application from :class:`~runtime.config.Settings`;
nothing is loaded at import time, and models load on first use through the scheduler.

    api/
    ├── __init__.py   create_app: middleware (CORS, host check), error handlers, routers
    ├── origins.py    OriginGuard: 403 for cross-site requests from origins not allowed
    ├── errors.py     ApiError and the one error -> HTTP answer mapping (Ollama / OpenAI shape)
    ├── schemas.py    request bodies, JSON reading with size limits
    ├── service.py    model lookup, options, keep_alive, format checks, runner slots, streaming
    │                 from runners; raises runtime.errors only (errors.py maps them to statuses)
    ├── prompting.py  seam to runtime.prompt (prompt building, tool-call parsing)
    ├── inference.py  prepare(): a chat / generate body -> PreparedRequest (model, options,
    │                 slot, prompt); launch(): its run as pieces; embeddings
    ├── streaming.py  waiting for a run (disconnects, first piece), collecting it, SSE framing
    ├── ollama.py     /api/* routes
    ├── openai.py     /v1/* routes (chat/completions, completions, models, embeddings)
    ├── responses.py  /v1/responses (OpenAI Responses API, stateless)
    ├── anthropic.py  /v1/messages (Anthropic Messages API)
    └── registry.py   /v2/* read-only LAN registry over the store (opt-in: settings.registry)
"""
from __future__ import annotations

import ipaddress
import logging
import socket
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime import __version__
from runtime.api.errors import ApiError, error_body, error_response, is_openai
from runtime.api.origins import OriginGuard, origins_regex
from runtime.api.service import Service
from runtime.config import Settings
from runtime.errors import LlmcrateError
from runtime.models.store import Store
from runtime.serve.scheduler import Scheduler

logger = logging.getLogger(__name__)

#: Headers browsers may send cross-origin (Ollama's GenerateRoutes CORS config).
CORS_HEADERS = [
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "OpenAI-Beta",
    "x-stainless-arch", "x-stainless-async", "x-stainless-custom-poll-interval",
    "x-stainless-helper-method", "x-stainless-lang", "x-stainless-os",
    "x-stainless-package-version", "x-stainless-poll-helper", "x-stainless-retry-count",
    "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-timeout",
]


def create_app(settings: Settings, *, store: Store | None = None) -> FastAPI:
    """Build the API server application.

    Args:
        settings: server settings (host, keep_alive, parallelism, origins, ...).
        store: the model store; defaults to ``Store(settings.models_dir)``.
    """
    store = store or Store(settings.models_dir)
    scheduler = Scheduler(settings)
    service = Service(settings, store, scheduler)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await scheduler.shutdown()

    app = FastAPI(title="llmcrate", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.service = service
    app.state.scheduler = scheduler
    app.state.store = store

    from runtime.api import anthropic, ollama, openai, responses

    app.include_router(ollama.router(service))
    app.include_router(openai.router(service))
    app.include_router(responses.router(service))
    app.include_router(anthropic.router(service))
    if settings.registry:
        from runtime.api import registry

        app.include_router(registry.router(store))

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(LlmcrateError)
    async def _domain_error(request: Request, exc: LlmcrateError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if is_openai(request):
            return JSONResponse(error_body(request, exc.status_code, str(exc.detail)),
                                status_code=exc.status_code)
        # gin's answers for unknown routes and methods
        text = {404: "404 page not found", 405: "405 method not allowed"}.get(
            exc.status_code, str(exc.detail))
        return PlainTextResponse(text, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return error_response(request, exc)

    allowed = settings.allowed_origins
    if "*" in allowed:
        app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"],
                           allow_headers=CORS_HEADERS)
    else:
        app.add_middleware(CORSMiddleware, allow_origin_regex=origins_regex(allowed),
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                           allow_headers=CORS_HEADERS)
    # outside CORS: a disallowed Origin is refused before any route (or body read) runs
    app.add_middleware(OriginGuard, origins=allowed)
    app.add_middleware(AllowedHosts, bind_host=settings.host.host)
    app.add_middleware(VersionHeader)
    return app


class VersionHeader:
    """``X-Llmcrate-Version`` on every answer: llmcrate's own version (``/api/version`` reports
    the Ollama API version llmcrate implements)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.header = (b"x-llmcrate-version", __version__.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


class AllowedHosts:
    """DNS-rebinding guard (Ollama's allowedHostsMiddleware): when bound to loopback, only
    requests whose Host names this machine (localhost, an IP, *.local, ...) are served."""

    def __init__(self, app: ASGIApp, *, bind_host: str) -> None:
        self.app = app
        self.active = _is_loopback(bind_host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.active:
            await self.app(scope, receive, send)
            return
        host = ""
        for k, v in scope.get("headers", []):
            if k == b"host":
                host = v.decode("latin-1")
                break
        if _host_allowed(host):
            await self.app(scope, receive, send)
            return
        await PlainTextResponse("", status_code=403)(scope, receive, send)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_allowed(host_header: str) -> bool:
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host in ("", "localhost") or host == socket.gethostname().lower():
        return True
    try:
        ip = ipaddress.ip_address(host)
        return ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_link_local
    except ValueError:
        pass
    return host.endswith((".localhost", ".local", ".internal"))


__all__ = ["create_app"]
