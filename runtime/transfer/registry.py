"""Pull models from an Ollama registry (registry.ollama.ai or a private mirror) into the store.

The protocol is Ollama's (``server/images.go``, ``server/download.go``, ``server/auth.go``):

1. ``GET /v2/<ns>/<model>/manifests/<tag>`` with the docker manifest ``Accept`` header; the bytes
   are kept exactly as served (the model ID is their sha256).
2. For every layer and the config blob, ``GET /v2/<ns>/<model>/blobs/<digest>``. The registry
   either answers 307/302/301/303/308 to a CDN on another host (redirects within the same host
   are followed) or serves the blob itself with 200; either way the resulting "direct URL" is
   then fetched in ranged parts by :mod:`runtime.transfer.download` (parallel, resumable, verified).
3. A ``401`` with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` sends us to the realm
   for a token (``{"token": …}``), which then goes in ``Authorization`` to the registry host only
   (never to the CDN).
4. Blobs already in the store are re-hashed and skipped; the rest are space-checked, fetched
   once each even when layers repeat, verified, moved into the store, and the manifest is
   written last — so a failed pull never shows up in ``list`` and a re-run resumes.

``http://`` is used only with ``insecure=True`` (``--insecure``), as in Ollama. Private mirrors
can be reached by name (``10.0.0.5:5000/library/tiny:latest``) or by mapping a registry host to
a mirror with :attr:`PullSettings.mirrors` (``LLMCRATE_REGISTRY_MIRRORS``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from runtime import __version__
from runtime.errors import (
    AuthError,
    DigestMismatch,
    ModelNotFound,
    RegistryError,
    StoreError,
)
from runtime.models.names import ModelName, parse_name
from runtime.models.store import MEDIA_MANIFEST, Layer, Manifest, Store
from runtime.progress import ProgressCallback, ProgressEvent
from runtime.transfer.download import (
    BlobDownload,
    PullSettings,
    RateLimiter,
    Transient,
    discard_partial,
    resumable_bytes,
    state_path,
)

__all__ = ["PullSettings", "pull_model", "raise_for_registry", "user_agent"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

ACCEPT_MANIFEST = MEDIA_MANIFEST
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 10
_RETRY_STATUS = (408, 425, 429, 500, 502, 503, 504)
_PROGRESS_EVERY = 0.1  # seconds between progress reports per blob
#: the largest manifest read (Docker distribution's limit; Ollama's are a few KB): a registry
#: sending more is refused before it costs memory
MAX_MANIFEST_SIZE = 4 << 20


def user_agent() -> str:
    py = platform.python_version()
    return f"llmcrate/{__version__} ({platform.machine()} {sys.platform}) Python/{py}"


def raise_for_registry(resp: httpx.Response, *, host: str, name: ModelName | None = None,
                       what: str = "request") -> None:
    """The one mapping from a registry's HTTP answer to llmcrate's errors (2xx/3xx pass).

    404 on a manifest is :class:`ModelNotFound`; 401/403 :class:`AuthError`; anything else a
    :class:`RegistryError` carrying the status and the registry's own error message.
    """
    status = resp.status_code
    if status < 400:
        return
    detail = _error_detail(resp)
    if status == 404 and what == "manifest" and name is not None:
        raise ModelNotFound(name.display)
    if status in (401, 403):
        raise AuthError(f"{host}: access denied to {what}"
                        + (f" of {name.display}" if name else "") + f" ({status}: {detail})",
                        host=host, status=status)
    if status == 404:
        raise RegistryError(f"{host}: {what} not found ({detail})", host=host, status=status)
    raise RegistryError(f"{host} answered {status} for {what}: {detail}", host=host, status=status)


def _error_detail(resp: httpx.Response) -> str:
    try:
        body = resp.read()[:2000]
    except (httpx.HTTPError, RuntimeError):
        body = b""
    try:
        doc = json.loads(body)
        errs = doc.get("errors") if isinstance(doc, dict) else None
        if errs and isinstance(errs, list) and isinstance(errs[0], dict):
            return "; ".join(str(e.get("message") or e.get("code")) for e in errs)
        if isinstance(doc, dict) and doc.get("error"):
            return str(doc["error"])
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip()
    return text[:200] or (resp.reason_phrase or "no details")


_OFFLINE_HINT = ("no network (or no DNS) here? pull on an online host and carry the model in a "
                 "bundle, or name a reachable mirror: LLMCRATE_REGISTRY_MIRRORS=registry.ollama.ai="
                 "http://MIRROR:5000")


def _name_not_resolved(e: BaseException) -> bool:
    """True when a transport error comes from a failed name lookup (``socket.gaierror``)."""
    cause: BaseException | None = e
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, socket.gaierror):
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return False


def _reason(e: BaseException) -> str:
    """A short human reason for a transport error ("connection refused", "timed out", ...)."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    return str(e) or type(e).__name__


class _Registry:
    """One registry session: base URL, auth token, an httpx client shared by all parts."""

    def __init__(self, name: ModelName, *, insecure: bool, settings: PullSettings) -> None:
        self.name = name
        self.settings = settings
        mirror = settings.mirrors.get(name.host.lower())
        if mirror:
            self.base = mirror
        else:
            scheme = name.scheme or "https"
            if scheme == "http" and not insecure:
                raise RegistryError(f"{name.host}: insecure protocol http (pull with --insecure "
                                    "to allow plain http)", host=name.host)
            self.base = f"{'http' if insecure else scheme}://{name.host}"
        self.host = urlsplit(self.base).netloc
        self.token: str | None = None
        timeout = httpx.Timeout(settings.connect_timeout, read=settings.stall_timeout)
        limits = httpx.Limits(max_connections=settings.max_parts + 4,
                              max_keepalive_connections=settings.max_parts + 4)
        self.client = httpx.Client(timeout=timeout, limits=limits, follow_redirects=False,
                                   headers={"User-Agent": user_agent()})

    def close(self) -> None:
        self.client.close()

    # -- requests -------------------------------------------------------------------------------
    def _is_registry(self, url: str) -> bool:
        return urlsplit(url).netloc == self.host

    def _headers(self, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = dict(extra or {})
        if self.token and self._is_registry(url):
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def send(self, method: str, url: str, *, headers: dict[str, str] | None = None,
             what: str, content: bytes | None = None) -> httpx.Response:
        """Send one streamed request, answering a Bearer challenge once. Transport errors
        become :class:`Transient`; the caller closes the response."""
        for attempt in range(2):
            req = self.client.build_request(method, url, headers=self._headers(url, headers),
                                            content=content)
            try:
                resp = self.client.send(req, stream=True)
            except httpx.TimeoutException as e:
                raise Transient(f"{urlsplit(url).netloc}: timed out ({_reason(e)})") from e
            except httpx.TransportError as e:
                host = urlsplit(url).hostname or urlsplit(url).netloc
                if _name_not_resolved(e):
                    # no retries: without a network (or DNS) the answer does not change
                    err = RegistryError(f"cannot resolve {host}: {_reason(e)}", host=host)
                    err.hint = _OFFLINE_HINT
                    raise err from e
                raise Transient(f"cannot reach {urlsplit(url).netloc}: {_reason(e)}") from e
            if resp.status_code == 401 and attempt == 0 and self._is_registry(url):
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.close()
                if not challenge.lower().startswith("bearer"):
                    raise AuthError(f"{self.host}: the registry wants {challenge.split(' ')[0] or 'auth'}"
                                    " authentication, which llmcrate does not speak", host=self.host,
                                    status=401)
                self.token = self._fetch_token(challenge)
                continue
            return resp
        return resp

    def _fetch_token(self, challenge: str) -> str:
        params = parse_challenge(challenge)
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"{self.host}: Bearer challenge without a realm", host=self.host)
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        for scope in (params.get("scope") or "").split():
            query.append(("scope", scope))
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        auth = None
        if self.settings.username and self.settings.password:
            auth = httpx.BasicAuth(self.settings.username, self.settings.password)
        realm_host = urlsplit(realm).netloc
        try:
            resp = self.client.get(url, auth=auth if auth else httpx.USE_CLIENT_DEFAULT,
                                   follow_redirects=True)
        except httpx.TransportError as e:
            raise AuthError(f"cannot reach the token service {realm_host}: {_reason(e)}",
                            host=realm_host) from e
        if resp.status_code >= 400:
            raise AuthError(f"{self.host}: authentication failed: token service {realm_host} "
                            f"answered {resp.status_code} ({_error_detail(resp)})",
                            host=self.host, status=resp.status_code)
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthError(f"{self.host}: token service {realm_host} sent no token",
                            host=self.host)
        return token

    def retrying(self, fn: Callable[[], T], what: str) -> T:
        """Call ``fn`` until it stops raising :class:`Transient` (backoff, ``retries`` times)."""
        s = self.settings
        for attempt in range(s.retries + 1):
            try:
                return fn()
            except Transient as e:
                if attempt >= s.retries:
                    err = RegistryError(f"{what}: {e}", host=self.host)
                    if self.base.startswith("https://"):
                        err.hint = "a private registry on plain http needs --insecure"
                    raise err from e
                delay = min(s.backoff * 2 ** attempt, s.max_backoff) * random.uniform(0.5, 1.5)
                logger.info("%s: %s; retrying in %.1fs", what, e, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    # -- protocol -------------------------------------------------------------------------------
    def fetch_manifest(self) -> bytes:
        n = self.name
        # "model@sha256:…" pins the manifest by digest: fetch that one and check it below
        url = f"{self.base}/v2/{n.repository}/manifests/{n.digest or n.tag}"

        def once() -> bytes:
            resp = self.send("GET", url, headers={"Accept": ACCEPT_MANIFEST}, what="manifest")
            try:
                if resp.status_code in _RETRY_STATUS:
                    raise Transient(f"{self.host} answered {resp.status_code}")
                raise_for_registry(resp, host=self.host, name=n, what="manifest")
                try:
                    raw = self._read_manifest(resp)
                except httpx.HTTPError as e:
                    raise Transient(f"manifest download from {self.host} broke off: {_reason(e)}") from e
                expected = n.digest or resp.headers.get("Docker-Content-Digest")
            finally:
                resp.close()
            if expected and expected.startswith("sha256:"):
                actual = "sha256:" + hashlib.sha256(raw).hexdigest()
                if actual != expected:
                    raise DigestMismatch(expected, actual, what=f"manifest of {n.display}")
            return raw

        return self.retrying(once, f"pulling manifest of {n.display} from {self.host}")

    def _read_manifest(self, resp: httpx.Response) -> bytes:
        too_big = RegistryError(f"{self.host} sent a manifest of {self.name.display} larger than "
                                f"{MAX_MANIFEST_SIZE >> 20} MiB; refusing it", host=self.host)
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_MANIFEST_SIZE:
            raise too_big
        buf = bytearray()
        for chunk in resp.iter_bytes():
            buf += chunk
            if len(buf) > MAX_MANIFEST_SIZE:
                raise too_big
        return bytes(buf)

    def resolve_blob(self, digest: str) -> str:
        """The URL to fetch ``digest`` from: the CDN location when the registry redirects to
        another host, else the registry's own blob URL (Ollama accepts both)."""
        url = f"{self.base}/v2/{self.name.repository}/blobs/{digest}"
        short = digest.split(":")[-1][:12]

        def once() -> str:
            nonlocal url
            current = url
            for _ in range(_MAX_REDIRECTS):
                resp = self.send("GET", current, headers={"Range": "bytes=0-0"}, what=f"blob {short}")
                try:
                    if resp.status_code in _REDIRECTS:
                        loc = resp.headers.get("Location")
                        if not loc:
                            raise RegistryError(f"{self.host}: redirect without a Location for "
                                                f"blob {short}", host=self.host)
                        nxt = urljoin(current, loc)
                        if urlsplit(nxt).hostname != urlsplit(current).hostname:
                            return nxt  # stop at the first hop to another host: the CDN
                        current = nxt
                        continue
                    if resp.status_code in _RETRY_STATUS:
                        raise Transient(f"{urlsplit(current).netloc} answered {resp.status_code}")
                    raise_for_registry(resp, host=urlsplit(current).netloc, what=f"blob {short}")
                    return current
                finally:
                    resp.close()
            raise RegistryError(f"{self.host}: more than {_MAX_REDIRECTS} redirects for blob {short}",
                                host=self.host)

        return self.retrying(once, f"locating blob {short} on {self.host}")

    def range_opener(self, digest: str, total: int) -> Callable[[int, int], Any]:
        """``open_range(start, end)`` for :class:`BlobDownload`, bound to this blob."""
        short = digest.split(":")[-1][:12]
        direct: list[str | None] = [None]
        lock = threading.Lock()

        @contextmanager
        def open_range(start: int, end: int) -> Iterator[Iterator[bytes]]:
            with lock:  # parts start together: resolve the direct URL once, not per part
                if direct[0] is None:
                    try:
                        direct[0] = self.resolve_blob(digest)
                    except (AuthError, ModelNotFound):
                        raise
                    except RegistryError as e:
                        raise Transient(str(e)) from e
                url = direct[0]
            assert url is not None
            for _ in range(_MAX_REDIRECTS):
                resp = self.send("GET", url, headers={"Range": f"bytes={start}-{end}"},
                                 what=f"blob {short}")
                try:
                    if resp.status_code in _REDIRECTS and resp.headers.get("Location"):
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    skip = self._check_range(resp, start, end, total, short)
                    yield _body(resp, skip)
                    return
                except httpx.TimeoutException as e:
                    raise Transient(f"stalled: no data for {self.settings.stall_timeout:g}s") from e
                except httpx.RemoteProtocolError as e:
                    raise Transient(f"truncated body: {e}") from e
                except httpx.TransportError as e:
                    raise Transient(f"{_reason(e)}") from e
                except Transient as e:
                    if e.reresolve:
                        direct[0] = None
                    raise
                finally:
                    resp.close()
            raise Transient(f"too many redirects for blob {short}")

        return open_range

    def _check_range(self, resp: httpx.Response, start: int, end: int, total: int,
                     short: str) -> int:
        """Check a ranged answer; return how many leading bytes to skip (a 200 that ignored
        the Range header still works, by discarding what precedes ``start``)."""
        host = resp.request.url.netloc.decode()
        status = resp.status_code
        if status in _RETRY_STATUS:
            raise Transient(f"{host} answered {status}")
        if status in (401, 403) and not self._is_registry(str(resp.request.url)):
            raise Transient(f"{host} answered {status} (expired CDN URL?)", reresolve=True)
        raise_for_registry(resp, host=host, what=f"blob {short}")
        if status == 206:
            cr = resp.headers.get("Content-Range", "")
            try:
                unit_range, _, size = cr.partition(" ")[2].partition("/")
                a, _, _b = unit_range.partition("-")
                got_start, got_total = int(a), int(size) if size != "*" else total
            except ValueError:
                raise RegistryError(f"{host}: bad Content-Range {cr!r} for blob {short}",
                                    host=host) from None
            if got_total != total:
                raise RegistryError(f"{host}: blob {short} is {got_total} bytes, the manifest "
                                    f"says {total}", host=host)
            if got_start != start:
                raise Transient(f"{host} sent range {unit_range}, asked for {start}-{end}")
            return 0
        if status == 200:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != total:
                raise RegistryError(f"{host}: blob {short} is {length} bytes, the manifest says "
                                    f"{total}", host=host)
            if start:
                logger.warning("%s ignores Range requests; skipping %d bytes", host, start)
            return start
        raise RegistryError(f"{host} answered {status} for blob {short}", host=host, status=status)


def _body(resp: httpx.Response, skip: int) -> Iterator[bytes]:
    for chunk in resp.iter_raw():  # as received: a chunk size would buffer (and lose) bytes
        if skip:
            if len(chunk) <= skip:
                skip -= len(chunk)
                continue
            chunk, skip = chunk[skip:], 0
        yield chunk


def parse_challenge(header: str) -> dict[str, str]:
    """``Bearer realm="…",service="…",scope="…"`` -> dict (quoted or bare values)."""
    body = header.split(" ", 1)[1] if " " in header else ""
    out: dict[str, str] = {}
    i = 0
    while i < len(body):
        eq = body.find("=", i)
        if eq < 0:
            break
        key = body[i:eq].strip(" ,").lower()
        if eq + 1 < len(body) and body[eq + 1] == '"':
            close = body.find('"', eq + 2)
            close = len(body) if close < 0 else close
            out[key] = body[eq + 2:close]
            i = close + 1
        else:
            comma = body.find(",", eq)
            comma = len(body) if comma < 0 else comma
            out[key] = body[eq + 1:comma].strip()
            i = comma + 1
    return out


def pull_model(store: Store, name: str | ModelName, *, insecure: bool = False,
               progress: ProgressCallback | None = None, settings: PullSettings | None = None,
               store_as: ModelName | None = None) -> Manifest:
    """Pull ``name`` from its registry into ``store`` and return the stored manifest.

    Args:
        store: the model store to fill.
        name: a registry name (``qwen2.5:0.5b``, ``10.0.0.5:5000/library/tiny:latest``).
        insecure: allow plain http (private mirrors).
        progress: receives Ollama ``/api/pull`` progress events (``pulling manifest``,
            ``pulling <digest12>`` with digest/total/completed, ``verifying sha256 digest``,
            ``writing manifest``, ``success``), always on the calling thread.
        settings: download tuning; default :meth:`PullSettings.from_env`.
        store_as: write the manifest under this name instead of ``name``.

    Raises:
        ModelNotFound, AuthError, RegistryError, DigestMismatch, InsufficientSpace, StoreError.
    """
    n = name if isinstance(name, ModelName) else parse_name(name)
    settings = settings or PullSettings.from_env()
    emit: ProgressCallback = progress or (lambda _e: None)
    reg = _Registry(n, insecure=insecure, settings=settings)
    try:
        store.check_writable()          # a read-only store fails here, before any download
        emit(ProgressEvent("pulling manifest"))
        raw = reg.fetch_manifest()
        try:
            manifest = Manifest.parse(raw, name=n.display)
        except StoreError as e:
            raise RegistryError(f"{reg.host} sent a manifest llmcrate cannot read: {e}",
                                host=reg.host) from e
        blobs = _unique_blobs(manifest)
        missing = _skip_stored(store, blobs, settings, emit)
        if missing:
            needed = sum(b.size - resumable_bytes(store.partial_path(b.digest), b.digest, b.size)
                         for b in missing)
            store.check_space(needed)
        limiter = RateLimiter(settings.bandwidth_limit)
        held: list[BlobDownload] = []  # partials stay locked until they are in the store
        try:
            finished = [(blob, _download(store, reg, blob, settings, limiter, emit, held))
                        for blob in missing]
            emit(ProgressEvent("verifying sha256 digest"))
            for blob, actual in finished:
                partial = store.partial_path(blob.digest)
                if actual is None:  # another pull stored it while we waited
                    continue
                if actual != blob.digest:
                    discard_partial(partial)
                    raise DigestMismatch(blob.digest, actual, what=f"blob {blob.digest[7:19]}")
                store.commit_blob(partial, blob.digest, verify=False)
                state_path(partial).unlink(missing_ok=True)
        finally:
            for dl in held:
                dl.release()
        emit(ProgressEvent("writing manifest"))
        stored = store.write_manifest(store_as or n, raw)
        emit(ProgressEvent("success"))
        return stored
    finally:
        reg.close()


def _unique_blobs(manifest: Manifest) -> list[Layer]:
    """Layers then config (Ollama's order), each digest once."""
    seen: set[str] = set()
    out: list[Layer] = []
    for layer in [*manifest.layers, manifest.config]:
        if layer.digest not in seen:
            seen.add(layer.digest)
            out.append(layer)
    return out


def _skip_stored(store: Store, blobs: list[Layer], settings: PullSettings,
                 emit: ProgressCallback) -> list[Layer]:
    missing = []
    for b in blobs:
        if store.has_blob(b.digest, verify=settings.verify_existing):
            emit(ProgressEvent(f"pulling {b.digest[7:19]}", digest=b.digest, total=b.size,
                               completed=b.size))
        else:
            missing.append(b)
    return missing


def _download(store: Store, reg: _Registry, blob: Layer, settings: PullSettings,
              limiter: RateLimiter, emit: ProgressCallback, held: list[BlobDownload]) -> str | None:
    """Fetch one blob into its partial (left locked, appended to ``held``); None when another
    pull put it in the store meanwhile."""
    status = f"pulling {blob.digest[7:19]}"
    last = [0.0]

    def on_progress(completed: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= _PROGRESS_EVERY or completed >= total:
            last[0] = now
            emit(ProgressEvent(status, digest=blob.digest, total=total, completed=completed))

    for _ in range(3):
        dl = BlobDownload(partial=store.partial_path(blob.digest), digest=blob.digest,
                          total=blob.size, open_range=reg.range_opener(blob.digest, blob.size),
                          settings=settings, limiter=limiter,
                          label=f"blob {blob.digest[7:19]} from {reg.host}")
        actual = dl.run(on_progress, keep_lock=True)
        if actual is not None:
            held.append(dl)
            return actual
        if store.has_blob(blob.digest):
            on_progress(blob.size, blob.size)
            return None
        # the other pull gave up on it (digest mismatch, error): fetch it ourselves
    raise StoreError(f"blob {blob.digest} kept vanishing while other pulls held it")
