"""A small HTTP client for the Ollama API served by ``llmcrate serve`` (or by Ollama itself).

The CLI talks to the server through :class:`Client`; every response goes through
:func:`raise_for_response`, the one place that turns HTTP answers into :mod:`runtime.errors`:

    nothing listening / connection refused  -> ServerUnavailable(host)
    404 on a model route                    -> ModelNotFound(name)
    503 (request queue full)                -> ServerBusy(message)
    any other status >= 400, or an
    ``{"error": ...}`` line mid-stream      -> ServerError(message, status)

Streaming routes (generate, chat, pull, create) return iterators of the NDJSON objects the
server sends. Closing the iterator (or interrupting it with Ctrl-C) closes the connection,
which is how a client cancels a generation on the server.
"""
from __future__ import annotations

import builtins
import hashlib
import ipaddress
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from runtime.config import Settings, load_settings
from runtime.errors import (
    LlmcrateError,
    ModelNotFound,
    ServerBusy,
    ServerError,
    ServerUnavailable,
)

logger = logging.getLogger(__name__)

#: Connecting must be quick (a dead server is reported at once); reading is unbounded because a
#: reply waits for the model to load and then streams for as long as the model talks.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=60.0, pool=5.0)

Json = dict[str, Any]


def raise_for_response(resp: httpx.Response, *, model: str | None = None) -> None:
    """Raise the :mod:`runtime.errors` exception for an error response; return if it succeeded.

    Args:
        resp: the response; for a stream it must have been read already.
        model: the model the request was about, so a 404 becomes ``ModelNotFound(model)``.
    """
    if resp.status_code < 400:
        return
    raise _error(resp.status_code, _error_message(resp), model=model)


def _error_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):          # OpenAI's shape: {"error": {"message": ...}}
            err = err.get("message")
        if isinstance(err, str) and err:
            return err
    text = resp.text.strip()
    return text or f"{resp.status_code} {resp.reason_phrase}"


def _error(status: int | None, message: str, *, model: str | None) -> LlmcrateError:
    if status == 404 and model is not None:
        return ModelNotFound(model)
    if status == 503:
        return ServerBusy(message)
    return ServerError(message, status=status)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Client:
    """Typed access to the Ollama REST API at ``settings.host`` (``OLLAMA_HOST``).

    Args:
        settings: where the server listens; ``load_settings()`` when omitted.
        timeout: an ``httpx.Timeout`` to replace :data:`DEFAULT_TIMEOUT`.
    """

    def __init__(self, settings: Settings | None = None, *, timeout: httpx.Timeout | None = None) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.host = str(self.settings.host)
        # A proxy from the environment must not capture requests to this machine's own server.
        self._http = httpx.Client(base_url=self.settings.host.url, timeout=timeout or DEFAULT_TIMEOUT,
                                  trust_env=not _is_loopback(self.settings.host.host))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, body: Mapping[str, Any] | None = None,
                 model: str | None = None, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, json=body, timeout=timeout or httpx.USE_CLIENT_DEFAULT,
                                      **kwargs)
        except httpx.TransportError as e:
            raise self._transport_error(e) from e
        raise_for_response(resp, model=model)
        return resp

    def _stream(self, path: str, body: Mapping[str, Any], *, model: str | None = None) -> Iterator[Json]:
        """POST ``body`` and yield each JSON object of the NDJSON answer (one when not streamed)."""
        try:
            with self._http.stream("POST", path, json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise_for_response(resp, model=model)
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError as e:
                        raise ServerError(f"malformed line from server: {line[:200]!r}",
                                          status=resp.status_code) from e
                    if isinstance(obj, dict) and obj.get("error"):
                        raise _error(None, str(obj["error"]), model=None)
                    yield obj
        except httpx.TransportError as e:
            raise self._transport_error(e) from e

    def _transport_error(self, e: httpx.TransportError) -> LlmcrateError:
        if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout)):
            return ServerUnavailable(self.host)
        if isinstance(e, httpx.RemoteProtocolError):
            return ServerError(f"the server at {self.host} closed the connection: {e}")
        return ServerError(f"request to {self.host} failed: {e}")

    # -- server ---------------------------------------------------------------------------------

    def is_up(self, *, timeout: float = 2.0) -> bool:
        """True when something answers ``GET /`` at the host (Ollama answers "Ollama is running")."""
        try:
            resp = self._http.get("/", timeout=timeout)
        except httpx.TransportError:
            return False
        return resp.status_code < 500

    def version(self) -> str:
        return str(self._request("GET", "/api/version").json().get("version", ""))

    def ps(self) -> builtins.list[Json]:
        """The loaded models: ``/api/ps`` items (name, model, size, size_vram, digest, expires_at…)."""
        return list(self._request("GET", "/api/ps").json().get("models") or [])

    # -- models ---------------------------------------------------------------------------------

    def list(self) -> builtins.list[Json]:
        """The local models: ``/api/tags`` items (name, model, size, digest, modified_at, details)."""
        return list(self._request("GET", "/api/tags").json().get("models") or [])

    def show(self, name: str, *, verbose: bool = False, system: str | None = None,
             options: Mapping[str, Any] | None = None) -> Json:
        """``/api/show``: modelfile, parameters, template, system, license, details, model_info…"""
        body: Json = {"model": name}
        if verbose:
            body["verbose"] = True
        if system:
            body["system"] = system
        if options:
            body["options"] = dict(options)
        return self._request("POST", "/api/show", body=body, model=name).json()

    def copy(self, source: str, destination: str) -> None:
        self._request("POST", "/api/copy", body={"source": source, "destination": destination},
                      model=source)

    def delete(self, name: str) -> None:
        self._request("DELETE", "/api/delete", body={"model": name}, model=name)

    def has_blob(self, digest: str) -> bool:
        try:
            self._request("HEAD", f"/api/blobs/{digest}", model=digest)
        except ModelNotFound:
            return False
        return True

    def create_blob(self, path: str | Path, *, digest: str | None = None) -> str:
        """Upload a file as a blob unless the server has it; return its ``sha256:<hex>`` digest."""
        path = Path(path)
        if digest is None:
            h = hashlib.sha256()
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            digest = f"sha256:{h.hexdigest()}"
        if not self.has_blob(digest):
            with path.open("rb") as f:
                self._request("POST", f"/api/blobs/{digest}", content=f)
        return digest

    def create(self, name: str, *, from_: str | None = None, files: Mapping[str, str] | None = None,
               adapters: Mapping[str, str] | None = None, template: str | None = None,
               license: str | Sequence[str] | None = None, system: str | None = None,
               parameters: Mapping[str, Any] | None = None,
               messages: Sequence[Mapping[str, Any]] | None = None,
               quantize: str | None = None) -> Iterator[Json]:
        """``/api/create``: yields the progress objects (``{"status": ...}``) until "success"."""
        body: Json = {"model": name, "stream": True}
        for key, value in (("from", from_), ("files", files), ("adapters", adapters),
                           ("template", template), ("license", license), ("system", system),
                           ("parameters", parameters), ("messages", messages), ("quantize", quantize)):
            if value is not None:
                body[key] = value if isinstance(value, str) else (
                    dict(value) if isinstance(value, Mapping) else list(value))
        return self._stream("/api/create", body, model=from_)

    def create_from_modelfile(self, name: str, modelfile: Any, *, base_dir: Path) -> Iterator[str]:
        """``llmcrate create`` through the server: upload the FROM/ADAPTER files as blobs (when the
        server lacks them), then ``/api/create``; yields Ollama-style status lines.

        Args:
            name: the new model's name.
            modelfile: a parsed :class:`runtime.models.modelfile.Modelfile`.
            base_dir: the Modelfile's folder; relative FROM/ADAPTER paths resolve against it.
        """
        import os

        from runtime.errors import ModelfileError
        from runtime.models.create import resolve_sources

        yield "gathering model components"
        src = resolve_sources(modelfile, base_dir)
        files: dict[str, str] | None = None
        for p in src.files:
            yield f"copying file {p.name}"
            files = files or {}
            files[p.name] = self.create_blob(p)
        adapters: dict[str, str] | None = None
        for a in modelfile.adapters or []:
            p = Path(os.path.expanduser(a))
            p = p if p.is_absolute() else base_dir / p
            if not p.is_file():
                raise ModelfileError(f"ADAPTER {a}: file does not exist ({p})")
            adapters = adapters or {}
            adapters[p.name] = self.create_blob(p)
        licenses = list(modelfile.licenses or [])
        for obj in self.create(name, from_=src.model, files=files,
                               adapters=adapters, template=modelfile.template, system=modelfile.system,
                               parameters=dict(modelfile.parameters or {}) or None,
                               messages=list(modelfile.messages or []) or None,
                               license=licenses or None):
            if obj.get("status"):
                yield str(obj["status"])

    def pull(self, name: str, *, insecure: bool = False, stream: bool = True) -> Iterator[Json]:
        """``/api/pull``: yields progress objects (status, digest, total, completed)."""
        return self._stream("/api/pull", {"model": name, "insecure": insecure, "stream": stream},
                            model=name)

    def push(self, name: str, *, insecure: bool = False, stream: bool = True) -> Iterator[Json]:
        """``/api/push``: yields progress objects (status, digest, total, completed)."""
        return self._stream("/api/push", {"model": name, "insecure": insecure, "stream": stream},
                            model=name)

    # -- inference ------------------------------------------------------------------------------

    def generate(self, model: str, prompt: str | None = None, *, system: str | None = None,
                 template: str | None = None, context: Sequence[int] | None = None, raw: bool = False,
                 format: str | Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
                 keep_alive: str | float | None = None, images: Sequence[str] | None = None,
                 suffix: str | None = None, think: bool | str | None = None,
                 stream: bool = True) -> Iterator[Json]:
        """``/api/generate``: yields the response chunks; the last has ``done: true`` and timings.

        With no prompt the server only loads the model (or unloads it when ``keep_alive`` is 0).
        """
        body: Json = {"model": model, "stream": stream}
        if prompt is not None:
            body["prompt"] = prompt
        if raw:
            body["raw"] = True
        for key, value in (("system", system), ("template", template), ("context", context),
                           ("format", format), ("options", options), ("keep_alive", keep_alive),
                           ("images", images), ("suffix", suffix), ("think", think)):
            if value is not None and value != "":
                body[key] = _plain(value)
        return self._stream("/api/generate", body, model=model)

    def chat(self, model: str, messages: Sequence[Mapping[str, Any]], *,
             format: str | Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
             keep_alive: str | float | None = None, tools: Sequence[Mapping[str, Any]] | None = None,
             think: bool | str | None = None, stream: bool = True) -> Iterator[Json]:
        """``/api/chat``: yields chunks whose ``message.content`` pieces make up the reply."""
        body: Json = {"model": model, "messages": [dict(m) for m in messages], "stream": stream}
        for key, value in (("format", format), ("options", options), ("keep_alive", keep_alive),
                           ("tools", tools), ("think", think)):
            if value is not None and value != "":
                body[key] = _plain(value)
        return self._stream("/api/chat", body, model=model)

    def load(self, model: str, *, keep_alive: str | float | None = None) -> None:
        """Load ``model`` now (an empty generate request), so the first reply starts at once."""
        for _ in self.generate(model, keep_alive=keep_alive):
            pass

    def stop(self, model: str) -> None:
        """Unload ``model`` now (``keep_alive: 0``); ModelNotFound when the server has no such model."""
        for _ in self.generate(model, keep_alive=0):
            pass


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


def connect(settings: Settings | None = None) -> Client | None:
    """A :class:`Client` when a server answers at ``settings.host``, else ``None``.

    For commands that work through the server when one runs and fall back to the local store
    when none does (list, show, create, cp, rm)::

        client = connect(settings)
        if client is None:
            ...  # use runtime.models.store directly
    """
    client = Client(settings)
    if client.is_up():
        return client
    client.close()
    return None
