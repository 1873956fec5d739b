"""A read-only LAN registry: the store served over Ollama's registry protocol (issue 13).

Opt-in (``LLMCRATE_REGISTRY=1`` or ``llmcrate serve --registry``), so other offline hosts can
``llmcrate pull --insecure HOST:PORT/library/tiny:latest`` (or ``ollama pull --insecure``) from a
host that already has the model. The routes are the subset of the Docker registry v2 API that
Ollama's client uses (``server/images.go``, ``server/download.go``)::

    GET|HEAD /v2/                                  {} (the API is there)
    GET|HEAD /v2/<ns>/<model>/manifests/<tag>      the stored manifest bytes, as they are
    GET|HEAD /v2/<ns>/<model>/blobs/sha256:<hex>   the blob; HTTP Range (206) supported

The request names no registry host, so ``<ns>/<model>:<tag>`` is looked up under Ollama's
default host first, then under any other host in the store. Names and digests are checked with
the store's own rules before any path is built from them, so nothing outside ``blobs/`` and
``manifests/`` can be named. Blobs stream from disk in chunks (Starlette's ``FileResponse``,
which also answers ``Range``), so memory does not grow with blob size.
"""
from __future__ import annotations

import logging
import re

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

from runtime.errors import InvalidName, StoreError
from runtime.models.names import DEFAULT_HOST, ModelName, parse_name
from runtime.models.store import Manifest, Store, check_digest

logger = logging.getLogger(__name__)

#: a manifest reference that is a digest rather than a tag
_DIGEST_REF = re.compile(r"^sha256:[0-9a-f]{64}$")


def _error(status: int, code: str, message: str) -> JSONResponse:
    """The registry's error body (distribution spec), which Ollama's client reads."""
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status_code=status)


def _repo_name(namespace: str, model: str, tag: str = "latest") -> ModelName:
    """``ns/model:tag`` under the default host, validated by the store's naming rules."""
    return parse_name(f"{DEFAULT_HOST}/{namespace}/{model}:{tag}")


def find_manifest(store: Store, namespace: str, model: str, reference: str) -> Manifest | None:
    """The manifest of ``namespace/model`` at ``reference`` (a tag or ``sha256:<hex>``).

    The default registry host wins; otherwise the newest model of that name on any host.
    Raises InvalidName for a name the store would not accept.
    """
    by_digest = _DIGEST_REF.match(reference) is not None
    wanted = _repo_name(namespace, model, "latest" if by_digest else reference)
    if not by_digest and store.exists(wanted):
        return store.resolve(wanted)
    key = wanted.key()[1:3]
    candidates = [e for e in store.list_models() if e.name.key()[1:3] == key]
    for entry in candidates:  # newest first
        if by_digest:
            if entry.manifest.digest == reference:
                return entry.manifest
        elif entry.name.tag.lower() == wanted.tag.lower():
            return entry.manifest
    return None


def router(store: Store) -> APIRouter:
    """The ``/v2/`` routes over ``store`` (read-only)."""
    r = APIRouter()

    @r.api_route("/v2/", methods=["GET", "HEAD"])
    async def base() -> Response:
        return JSONResponse({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    @r.api_route("/v2/{namespace}/{model}/manifests/{reference}", methods=["GET", "HEAD"])
    def manifest(namespace: str, model: str, reference: str) -> Response:
        try:
            found = find_manifest(store, namespace, model, reference)
        except InvalidName as e:
            return _error(400, "NAME_INVALID", str(e))
        except StoreError as e:  # a corrupt manifest: say so without naming server paths
            logger.warning("registry: %s", e)
            return _error(500, "MANIFEST_INVALID", "the stored manifest is corrupt")
        if found is None:
            return _error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {namespace}/{model}:{reference}")
        return Response(found.raw, media_type=found.media_type,
                        headers={"Docker-Content-Digest": found.digest})

    @r.api_route("/v2/{namespace}/{model}/blobs/{digest}", methods=["GET", "HEAD"])
    def blob(namespace: str, model: str, digest: str) -> Response:
        try:
            _repo_name(namespace, model)
        except InvalidName as e:
            return _error(400, "NAME_INVALID", str(e))
        try:
            hexpart = check_digest(digest)
        except StoreError:
            return _error(400, "DIGEST_INVALID", "invalid digest (expected sha256:<64 hex digits>)")
        if not digest.startswith("sha256:"):
            return _error(400, "DIGEST_INVALID", "invalid digest (expected sha256:<64 hex digits>)")
        path = store.blob_path(digest)
        if not path.is_file():
            return _error(404, "BLOB_UNKNOWN", f"blob unknown: sha256:{hexpart}")
        # FileResponse streams in chunks, answers HEAD and single/multiple Range requests (206/416).
        return FileResponse(path, media_type="application/octet-stream",
                            headers={"Docker-Content-Digest": f"sha256:{hexpart}",
                                     "Cache-Control": "max-age=31536000, immutable"})

    return r


__all__ = ["find_manifest", "router"]
