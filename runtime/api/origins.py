"""Cross-site request guard: a request whose ``Origin`` is not allowed gets 403 before its body is read.

Browsers send "simple" cross-origin requests (``Content-Type: text/plain``, no preflight) and
only hide the answer from the page, so CORS headers alone do not stop a web page from creating,
copying, pulling or deleting models. Ollama aborts every such request with 403 (gin-contrib/cors
as configured in its ``GenerateRoutes``); so does :class:`OriginGuard`. Allowed are the
``OLLAMA_ORIGINS`` patterns, Ollama's default local origins
(:data:`runtime.config.DEFAULT_ORIGINS`), browser extensions, and same-origin requests
(``Origin`` naming the ``Host`` the request was sent to). Requests without ``Origin``
(curl, the CLI, the Python clients) are not touched.
"""
from __future__ import annotations

import logging
import re

from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

#: gin-contrib/cors AllowBrowserExtensions, which Ollama turns on (Page Assist and friends).
BROWSER_EXTENSIONS = ("chrome-extension://*", "moz-extension://*", "safari-web-extension://*")


def origins_regex(origins: tuple[str, ...]) -> str:
    """OLLAMA_ORIGINS patterns (``*`` wildcards) as one anchored regular expression."""
    parts = [re.escape(o).replace(r"\*", ".*") for o in (*origins, *BROWSER_EXTENSIONS)]
    return "^(?:" + "|".join(parts) + ")$"


class OriginGuard:
    """Pure ASGI middleware: 403 for any HTTP request with a disallowed ``Origin`` header.

    It answers before calling the app, so no route runs and no body byte is read.
    """

    def __init__(self, app: ASGIApp, *, origins: tuple[str, ...]) -> None:
        self.app = app
        self.allow_all = "*" in origins
        self.pattern = re.compile(origins_regex(origins), re.IGNORECASE)

    def allowed(self, origin: str, host: str) -> bool:
        if self.allow_all:
            return True
        # gin-contrib/cors: an Origin equal to the request's own scheme://Host is no CORS request
        if host and origin.lower() in (f"http://{host}".lower(), f"https://{host}".lower()):
            return True
        return self.pattern.match(origin) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = host = None
        for k, v in scope.get("headers", []):
            if k == b"origin":
                origin = v.decode("latin-1")
            elif k == b"host":
                host = v.decode("latin-1")
        if origin is None or self.allowed(origin, host or ""):
            await self.app(scope, receive, send)
            return
        logger.warning("refused %s %s from origin %r (not in OLLAMA_ORIGINS)",
                       scope.get("method"), scope.get("path"), origin)
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(_FORBIDDEN)).encode())]})
        await send({"type": "http.response.body", "body": _FORBIDDEN})


_FORBIDDEN = b'{"error":"origin not allowed"}'
