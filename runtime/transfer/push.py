"""Push a model from the store to an Ollama / docker v2 registry (an internal registry or a
mirror), with Ollama's protocol (``server/images.go`` PushModel, ``server/upload.go``):

1. for every layer and the config blob, ``HEAD /v2/<ns>/<model>/blobs/<digest>``: 200 means the
   registry has it (skipped);
2. otherwise ``POST /v2/<ns>/<model>/blobs/uploads/`` opens an upload session (202 and a
   ``Location``), the blob goes up in ``PATCH`` chunks (``Content-Range: start-end``, each answer
   carrying the next ``Location``), and ``PUT <location>?digest=<digest>`` commits it (201);
3. ``PUT /v2/<ns>/<model>/manifests/<tag>`` with the stored manifest bytes, unchanged (so the
   model ID is the same on both sides).

Bearer auth, ``--insecure`` for plain http, mirrors and retries are those of pulls
(:mod:`runtime.transfer.registry`).
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urljoin

from runtime.errors import RegistryError
from runtime.models.names import ModelName, parse_name
from runtime.models.store import MEDIA_MANIFEST, Layer, Manifest, Store
from runtime.progress import ProgressCallback, ProgressEvent
from runtime.transfer.download import PullSettings, Transient
from runtime.transfer.registry import _RETRY_STATUS, _Registry, raise_for_registry

__all__ = ["CHUNK", "push_model"]

logger = logging.getLogger(__name__)

#: bytes per PATCH request (read into memory, so a refused or retried chunk can be sent again)
CHUNK = 64 << 20


def push_model(store: Store, name: str | ModelName, *, insecure: bool = False,
               progress: ProgressCallback | None = None, settings: PullSettings | None = None,
               chunk_size: int = CHUNK) -> Manifest:
    """Push ``name`` (its registry is the host part of the name) and return its manifest.

    Args:
        store: the store holding the model.
        name: e.g. ``10.0.0.5:5000/team/model:tag``.
        insecure: allow plain http.
        progress: receives Ollama ``/api/push`` progress events (``retrieving manifest``,
            ``pushing <digest12>`` with digest/total/completed, ``pushing manifest``, ``success``).
        settings: retries, timeouts, mirrors and credentials (those of pulls).
        chunk_size: bytes per upload request.

    Raises:
        ModelNotFound, AuthError, RegistryError, StoreError.
    """
    n = name if isinstance(name, ModelName) else parse_name(name)
    emit: ProgressCallback = progress or (lambda _e: None)
    emit(ProgressEvent("retrieving manifest"))
    manifest = store.resolve(n)
    settings = settings or PullSettings.from_env()
    reg = _Registry(n, insecure=insecure, settings=settings)
    try:
        seen: set[str] = set()
        for blob in [*manifest.layers, manifest.config]:
            if blob.digest in seen:
                continue
            seen.add(blob.digest)
            _push_blob(store, reg, blob, emit, chunk_size)
        emit(ProgressEvent("pushing manifest"))
        url = f"{reg.base}/v2/{n.repository}/manifests/{n.tag}"

        def put_manifest() -> None:
            resp = reg.send("PUT", url, headers={"Content-Type": MEDIA_MANIFEST},
                            content=manifest.raw, what="manifest")
            try:
                _check(resp, reg, "manifest", n)
            finally:
                resp.close()

        reg.retrying(put_manifest, f"pushing manifest of {n.display} to {reg.host}")
        emit(ProgressEvent("success"))
        return manifest
    finally:
        reg.close()


def _check(resp: Any, reg: _Registry, what: str, name: ModelName | None = None) -> None:
    if resp.status_code in _RETRY_STATUS:
        raise Transient(f"{reg.host} answered {resp.status_code} for {what}")
    raise_for_registry(resp, host=reg.host, name=name, what=what)


def _push_blob(store: Store, reg: _Registry, blob: Layer, emit: ProgressCallback,
               chunk_size: int) -> None:
    short = blob.digest[7:19]
    status = f"pushing {short}"
    repo = reg.name.repository
    head_url = f"{reg.base}/v2/{repo}/blobs/{blob.digest}"

    def exists() -> bool:
        resp = reg.send("HEAD", head_url, what=f"blob {short}")
        try:
            if resp.status_code == 404:
                return False
            _check(resp, reg, f"blob {short}")
            return True
        finally:
            resp.close()

    if reg.retrying(exists, f"checking blob {short} on {reg.host}"):
        emit(ProgressEvent(status, digest=blob.digest, total=blob.size, completed=blob.size))
        return
    path = store.blob_path(blob.digest)

    def upload() -> None:
        # a fresh session per attempt: a session a failure broke off is not resumed
        start_url = f"{reg.base}/v2/{repo}/blobs/uploads/"
        resp = reg.send("POST", start_url, what=f"upload of blob {short}")
        try:
            _check(resp, reg, f"upload of blob {short}")
            location = _location(resp, start_url, reg)
        finally:
            resp.close()
        done = 0
        emit(ProgressEvent(status, digest=blob.digest, total=blob.size, completed=0))
        with open(path, "rb") as f:
            while done < blob.size:
                data = f.read(chunk_size)
                if not data:
                    raise RegistryError(f"blob {short} is shorter in the store than its "
                                        f"manifest says", host=reg.host)
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Range": f"{done}-{done + len(data) - 1}"}
                resp = reg.send("PATCH", location, headers=headers, content=data,
                                what=f"blob {short}")
                try:
                    _check(resp, reg, f"blob {short}")
                    location = _location(resp, location, reg)
                finally:
                    resp.close()
                done += len(data)
                emit(ProgressEvent(status, digest=blob.digest, total=blob.size, completed=done))
        commit = location + ("&" if "?" in location else "?") + f"digest={blob.digest}"
        resp = reg.send("PUT", commit, headers={"Content-Type": "application/octet-stream"},
                        content=b"", what=f"blob {short}")
        try:
            _check(resp, reg, f"blob {short}")
        finally:
            resp.close()

    reg.retrying(upload, f"pushing blob {short} to {reg.host}")


def _location(resp: Any, base: str, reg: _Registry) -> str:
    loc = resp.headers.get("Location")
    if not loc:
        raise RegistryError(f"{reg.host}: upload answer without a Location", host=reg.host)
    return urljoin(base, loc)
