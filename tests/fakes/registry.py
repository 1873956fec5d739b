"""A fake Ollama registry: a real HTTP server on 127.0.0.1 speaking the docker v2 pull protocol.

    with FakeRegistry(tmp_path / "reg") as reg:          # or reg.start() / reg.stop()
        model = reg.add_model("library/tiny:latest", gguf, template="...", params={"stop": [...]})
        pull_model(store, f"{reg.host}/library/tiny:latest", insecure=True)

Routes: ``GET|HEAD /v2/<ns>/<model>/manifests/<tag>``, ``GET|HEAD /v2/<ns>/<model>/blobs/<digest>``,
``GET /token`` (the Bearer realm), ``GET /_stats[?digest=]`` (bytes served, for benchmarks
that run the registry in another process) and, on a second port, the "CDN" ``GET|HEAD /cdn/<digest>``.
Pushes (docker v2 uploads): ``POST /v2/<repo>/blobs/uploads/`` opens a session (202 + Location),
``PATCH <location>`` appends (``Content-Range`` checked), ``PUT <location>?digest=`` verifies and
stores the blob (201), ``PUT /v2/<repo>/manifests/<tag>`` stores a manifest whose blobs are all
present (201; 400 ``MANIFEST_BLOB_UNKNOWN`` otherwise). ``pushed`` lists the manifests received.

Switches (attributes, change them any time): ``redirect_to_cdn`` (False or a 3xx code: 301, 302,
303, 307, 308; True means 307), ``plain_200`` (serve blobs from the registry port itself; the
default when no redirect is set), ``bearer`` (401 + ``WWW-Authenticate: Bearer realm=…`` until a
token from the realm is sent), ``deny_token`` (the realm refuses), and on ``faults`` (applied to
every blob body, wherever it is served): ``slow`` (bytes/s), ``drop_after_bytes`` (+ ``drop_times``),
``wrong_digest``, ``lie_content_length``. ``fail_next`` answers the next N blob requests with 503.
``chunked_manifests`` sends manifests chunked, without a Content-Length (as a hostile registry may).
``requests`` is the log; ``bytes_served(digest)`` sums body bytes sent for one blob.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes._http import Faults, Handler, RequestRecord, Server

MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA = {
    "model": "application/vnd.ollama.image.model",
    "template": "application/vnd.ollama.image.template",
    "system": "application/vnd.ollama.image.system",
    "params": "application/vnd.ollama.image.params",
    "license": "application/vnd.ollama.image.license",
    "messages": "application/vnd.ollama.image.messages",
    "adapter": "application/vnd.ollama.image.adapter",
    "projector": "application/vnd.ollama.image.projector",
}
TOKEN = "fake-registry-token"
_V2 = re.compile(r"^/v2/(?P<repo>[^/]+/[^/]+)/(?P<kind>manifests|blobs)/(?P<ref>[^/?]+)$")

__all__ = ["TOKEN", "FakeModel", "FakeRegistry", "Faults", "RequestRecord"]


@dataclass
class FakeModel:
    """What :meth:`FakeRegistry.add_model` published."""

    name: str                      # "ns/model:tag"
    manifest: bytes                # exact bytes served
    config_digest: str
    layers: list[dict[str, Any]]   # manifest "layers" entries
    blobs: dict[str, Path] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    @property
    def model_digest(self) -> str:
        return next(x["digest"] for x in self.layers if x["mediaType"] == MEDIA["model"])

    def all_digests(self) -> list[str]:
        return [x["digest"] for x in self.layers] + [self.config_digest]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class FakeRegistry:
    def __init__(self, root_dir: str | Path) -> None:
        self.root = Path(root_dir)
        self.blobs_dir = self.root / "blobs"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.manifests: dict[str, bytes] = {}          # "ns/model:tag" -> raw bytes
        self.models: dict[str, FakeModel] = {}
        self.redirect_to_cdn: bool | int = False
        self.plain_200 = True
        self.bearer = False
        self.deny_token = False
        self.fail_next = 0
        self.chunked_manifests = False
        self.faults = Faults()
        self.uploads: dict[str, bytearray] = {}     # upload session id -> bytes so far
        self.pushed: list[str] = []                  # "ns/model:tag" of manifests pushed
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._api: Server | None = None
        self._cdn: Server | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> str:
        """Start both ports and return the registry's base URL (``http://127.0.0.1:PORT``)."""
        self._api = Server(_RegistryHandler, self, "registry")
        self._cdn = Server(_CdnHandler, self, "cdn")
        self._api.start()
        self._cdn.start()
        return self.base_url

    def stop(self) -> None:
        for s in (self._api, self._cdn):
            if s is not None:
                s.stop()
        self._api = self._cdn = None

    def __enter__(self) -> FakeRegistry:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the host part of model names pulled from this registry."""
        assert self._api is not None, "start() first"
        return f"127.0.0.1:{self._api.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    @property
    def cdn_url(self) -> str:
        assert self._cdn is not None, "start() first"
        return f"http://127.0.0.1:{self._cdn.port}"

    # -- content ------------------------------------------------------------------------------
    def add_blob(self, src: Path | bytes) -> tuple[str, int]:
        """Store a blob (hard-linked when possible, so 2 GB models cost no copy)."""
        if isinstance(src, bytes):
            digest = "sha256:" + hashlib.sha256(src).hexdigest()
            dst = self.blobs_dir / digest.replace(":", "-")
            if not dst.exists():
                dst.write_bytes(src)
            return digest, len(src)
        src = Path(src)
        digest = _sha256_file(src)
        dst = self.blobs_dir / digest.replace(":", "-")
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        return digest, src.stat().st_size

    def add_model(self, name: str, gguf_path: str | Path, *, template: str | None = None,
                  system: str | None = None, params: dict[str, Any] | None = None,
                  license: str | None = None, messages: list[dict[str, str]] | None = None,
                  extra: list[tuple[str, bytes | Path]] = (),  # type: ignore[assignment]
                  pretty: bool = True) -> FakeModel:
        """Publish ``name`` ("model", "ns/model" or "ns/model:tag") with the given layers.

        ``pretty`` serves indented JSON, so a client that re-serialises the manifest instead of
        storing the served bytes is caught.
        """
        key = _key(name)
        layers: list[dict[str, Any]] = []

        def add(media: str, src: bytes | Path) -> None:
            digest, size = self.add_blob(src)
            layers.append({"mediaType": media, "digest": digest, "size": size})

        add(MEDIA["model"], Path(gguf_path))
        for kind, src in extra:
            add(MEDIA.get(kind, kind), src)
        if template is not None:
            add(MEDIA["template"], template.encode())
        if system is not None:
            add(MEDIA["system"], system.encode())
        if license is not None:
            add(MEDIA["license"], license.encode())
        if messages is not None:
            add(MEDIA["messages"], json.dumps(messages).encode())
        if params is not None:
            add(MEDIA["params"], json.dumps(params).encode())
        config = {"model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
                  "model_type": "tiny", "file_type": "F32", "architecture": "amd64", "os": "linux",
                  "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]}}
        cdigest, csize = self.add_blob(json.dumps(config).encode())
        doc = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
               "config": {"mediaType": MEDIA_CONFIG, "digest": cdigest, "size": csize},
               "layers": layers}
        raw = (json.dumps(doc, indent=3) + "\n").encode() if pretty else \
            json.dumps(doc, separators=(",", ":")).encode()
        model = FakeModel(name=key, manifest=raw, config_digest=cdigest, layers=layers,
                          blobs={d: self.blob_file(d) for d in [*(x["digest"] for x in layers), cdigest]})
        with self._lock:
            self.manifests[key] = raw
            self.models[key] = model
        return model

    def blob_file(self, digest: str) -> Path:
        return self.blobs_dir / digest.replace(":", "-")

    # -- log ----------------------------------------------------------------------------------
    def _log_request(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def bytes_served(self, digest: str | None = None) -> int:
        """Body bytes sent for ``digest`` (any blob when None), on both ports, so far."""
        with self._lock:
            recs = list(self.requests)
        hexpart = digest.split(":")[-1] if digest else None
        return sum(r.sent for r in recs
                   if ("/blobs/" in r.path or r.path.startswith("/cdn/"))
                   and (hexpart is None or hexpart in r.path))

    def requests_for(self, fragment: str) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests if fragment in r.path]


def _key(name: str) -> str:
    repo, _, tag = name.partition(":")
    if "/" not in repo:
        repo = "library/" + repo
    return f"{repo}:{tag or 'latest'}"


class _RegistryHandler(Handler):
    server: Server

    @property
    def reg(self) -> FakeRegistry:
        return self.server.owner  # type: ignore[no-any-return]

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        reg = self.reg
        url = urlsplit(self.path)
        if url.path == "/token":
            return self._token(parse_qs(url.query))
        if url.path == "/_stats":  # for benchmarks running the registry in another process
            digest = parse_qs(url.query).get("digest", [None])[0]
            return self.send_bytes(200, json.dumps({"bytes_served": reg.bytes_served(digest)}).encode())
        m = _V2.match(url.path)
        if url.path in ("/v2", "/v2/"):
            return self.send_bytes(200, b"{}")
        if not m:
            return self._error(404, "NOT_FOUND", "not found")
        if reg.bearer and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            realm = f"{reg.base_url}/token"
            challenge = (f'Bearer realm="{realm}",service="fake-registry",'
                         f'scope="repository:{m.group("repo")}:pull"')
            return self._error(401, "UNAUTHORIZED", "authentication required",
                               headers={"WWW-Authenticate": challenge})
        repo, kind, ref = m.group("repo"), m.group("kind"), m.group("ref")
        if kind == "manifests":
            raw = reg.manifests.get(f"{repo}:{ref}")
            if raw is None and ref.startswith("sha256:"):  # a manifest by digest
                raw = next((r for k, r in reg.manifests.items() if k.startswith(repo + ":")
                            and "sha256:" + hashlib.sha256(r).hexdigest() == ref), None)
            if raw is None:
                return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            if reg.chunked_manifests:
                return self._send_chunked(raw)
            return self.send_bytes(200, raw, content_type=MEDIA_MANIFEST,
                                   headers={"Docker-Content-Digest":
                                            "sha256:" + hashlib.sha256(raw).hexdigest()})
        path = reg.blob_file(ref)
        if not ref.startswith("sha256:") or not path.is_file():
            return self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        if reg.fail_next > 0:
            reg.fail_next -= 1
            return self._error(503, "UNAVAILABLE", "try again later")
        redirect = reg.redirect_to_cdn
        if redirect:
            code = 307 if redirect is True else int(redirect)
            self.send_response(code)
            self.send_header("Location", f"{reg.cdn_url}/cdn/{ref}?X-Signature=fake")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.record(code)
            return
        if not reg.plain_200:
            return self._error(500, "UNSUPPORTED", "no redirect configured and plain_200 is off")
        self.send_file(path, faults=reg.faults, headers={"Docker-Content-Digest": ref})

    # -- pushes ------------------------------------------------------------------------------
    _UPLOAD = re.compile(r"^/v2/(?P<repo>[^/]+/[^/]+)/blobs/uploads/(?P<id>[0-9a-f]*)$")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _push_denied(self, repo: str) -> bool:
        reg = self.reg
        if reg.bearer and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = (f'Bearer realm="{reg.base_url}/token",service="fake-registry",'
                         f'scope="repository:{repo}:push,pull"')
            self._body()
            self._error(401, "UNAUTHORIZED", "authentication required",
                        headers={"WWW-Authenticate": challenge})
            return True
        return False

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        m = self._UPLOAD.match(url.path)
        if not m or m.group("id"):
            self._body()
            return self._error(404, "NOT_FOUND", "not found")
        if self._push_denied(m.group("repo")):
            return
        self._body()
        session = os.urandom(8).hex()
        with self.reg._lock:
            self.reg.uploads[session] = bytearray()
        self.send_bytes(202, b"", headers={
            "Location": f"/v2/{m.group('repo')}/blobs/uploads/{session}",
            "Docker-Upload-UUID": session, "Range": "0-0"})

    def do_PATCH(self) -> None:
        url = urlsplit(self.path)
        m = self._UPLOAD.match(url.path)
        if not m or not m.group("id"):
            self._body()
            return self._error(404, "NOT_FOUND", "not found")
        if self._push_denied(m.group("repo")):
            return
        data = self._body()
        buf = self.reg.uploads.get(m.group("id"))
        if buf is None:
            return self._error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
        start = int((self.headers.get("Content-Range") or f"{len(buf)}-").split("-")[0])
        if start != len(buf):
            return self._error(416, "BLOB_UPLOAD_INVALID", f"expected offset {len(buf)}")
        buf.extend(data)
        self.send_bytes(202, b"", headers={"Location": url.path,
                                            "Range": f"0-{max(0, len(buf) - 1)}"})

    def do_PUT(self) -> None:
        reg = self.reg
        url = urlsplit(self.path)
        up = self._UPLOAD.match(url.path)
        man = _V2.match(url.path)
        if up and up.group("id"):
            if self._push_denied(up.group("repo")):
                return
            data = self._body()
            buf = reg.uploads.pop(up.group("id"), None)
            if buf is None:
                return self._error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
            buf.extend(data)
            digest = parse_qs(url.query).get("digest", [""])[0]
            actual = "sha256:" + hashlib.sha256(buf).hexdigest()
            if digest != actual:
                return self._error(400, "DIGEST_INVALID", f"digest {digest} != {actual}")
            reg.add_blob(bytes(buf))
            return self.send_bytes(201, b"", headers={"Docker-Content-Digest": actual,
                                                      "Location": f"/v2/{up.group('repo')}/blobs/{actual}"})
        if man and man.group("kind") == "manifests":
            if self._push_denied(man.group("repo")):
                return
            raw = self._body()
            try:
                doc = json.loads(raw)
                digests = [doc["config"]["digest"], *(x["digest"] for x in doc["layers"])]
            except (ValueError, KeyError, TypeError):
                return self._error(400, "MANIFEST_INVALID", "manifest invalid")
            missing = [d for d in digests if not reg.blob_file(d).is_file()]
            if missing:
                return self._error(400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown: {missing[0]}")
            key = f"{man.group('repo')}:{man.group('ref')}"
            with reg._lock:
                reg.manifests[key] = raw
                reg.pushed.append(key)
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            return self.send_bytes(201, b"", headers={"Docker-Content-Digest": digest})
        self._body()
        self._error(404, "NOT_FOUND", "not found")

    def _send_chunked(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", MEDIA_MANIFEST)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        rec = self.record(200)                  # logged first: the client may hang up any time
        try:
            for i in range(0, len(body), 1 << 16):
                piece = body[i:i + (1 << 16)]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                rec.sent += len(piece)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True        # the client stopped reading: that is the point

    def _token(self, query: dict[str, list[str]]) -> None:
        if self.reg.deny_token:
            return self._error(401, "DENIED", "requested access to the resource is denied")
        self.send_bytes(200, json.dumps({"token": TOKEN, "access_token": TOKEN}).encode())

    def _error(self, status: int, code: str, message: str, *,
               headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self.send_bytes(status, body, headers=headers)


class _CdnHandler(Handler):
    server: Server

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        reg: FakeRegistry = self.server.owner
        url = urlsplit(self.path)
        digest = url.path.rsplit("/", 1)[-1]
        path = reg.blob_file(digest)
        if not url.path.startswith("/cdn/") or not path.is_file():
            self.send_bytes(404, b"<Error>NoSuchKey</Error>", content_type="application/xml")
            return
        self.send_file(path, faults=reg.faults)
