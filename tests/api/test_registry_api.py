"""The LAN registry (issue 13): one live server's store served over /v2/, pulled by another
with the real CLI; HTTP ranges; strict names and digests; off by default."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from runtime.models.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _model_blob(store: Store) -> tuple[str, bytes]:
    m = store.resolve("tiny:latest")
    layer = m.layers_of("application/vnd.ollama.image.model")[0]
    return layer.digest, store.blob_path(layer.digest).read_bytes()


def test_pull_from_another_servers_registry(live_server, tiny_store, tmp_path):
    source = live_server(registry=True)
    other_store = Store(tmp_path / "other-models")
    target = live_server(store=other_store)
    hostport = source.split("://", 1)[1]
    env = {**os.environ, "OLLAMA_HOST": target}
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "pull", "--insecure",
                        f"{hostport}/library/tiny:latest"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pulled = other_store.resolve(f"{hostport}/library/tiny:latest")
    original = tiny_store.resolve("tiny:latest")
    assert pulled.raw == original.raw  # same bytes, so the same model ID
    for layer in original.all_blobs():
        assert other_store.has_blob(layer.digest, verify=True)


def test_manifest_headers_and_ranged_blob(live_server, tiny_store):
    url = live_server(registry=True)
    original = tiny_store.resolve("tiny:latest")
    digest, data = _model_blob(tiny_store)
    with httpx.Client(base_url=url) as c:
        assert c.get("/v2/").status_code == 200
        m = c.get("/v2/library/tiny/manifests/latest")
        assert m.status_code == 200 and m.content == original.raw
        assert m.headers["content-type"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert m.headers["docker-content-digest"] == original.digest
        # by digest too (what `ollama pull name@sha256:…` asks for)
        assert c.get(f"/v2/library/tiny/manifests/{original.digest}").content == original.raw

        head = c.head(f"/v2/library/tiny/blobs/{digest}")
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
        assert head.headers["docker-content-digest"] == digest

        part = c.get(f"/v2/library/tiny/blobs/{digest}", headers={"Range": "bytes=100-1123"})
        assert part.status_code == 206
        assert part.content == data[100:1124]
        assert part.headers["content-range"] == f"bytes 100-1123/{len(data)}"
        tail = c.get(f"/v2/library/tiny/blobs/{digest}", headers={"Range": f"bytes={len(data) - 10}-"})
        assert tail.status_code == 206 and tail.content == data[-10:]
        bad = c.get(f"/v2/library/tiny/blobs/{digest}", headers={"Range": f"bytes={len(data) + 5}-"})
        assert bad.status_code == 416

        whole = c.get(f"/v2/library/tiny/blobs/{digest}")
        assert "sha256:" + hashlib.sha256(whole.content).hexdigest() == digest


@pytest.mark.parametrize("path, status, code", [
    ("/v2/library/nope/manifests/latest", 404, "MANIFEST_UNKNOWN"),
    ("/v2/library/tiny/manifests/other", 404, "MANIFEST_UNKNOWN"),
    ("/v2/library/tiny/manifests/..", 404, None),   # dot segments never reach a route
    ("/v2/library/tiny/manifests/.hidden", 400, "NAME_INVALID"),
    ("/v2/library/tiny/manifests/-x", 400, "NAME_INVALID"),
    ("/v2/library/.tiny/manifests/latest", 400, "NAME_INVALID"),
    ("/v2/lib.rary/tiny/manifests/latest", 400, "NAME_INVALID"),
    ("/v2/library/tiny/blobs/sha256:" + "0" * 64, 404, "BLOB_UNKNOWN"),
    ("/v2/library/tiny/blobs/sha256:" + "0" * 63, 400, "DIGEST_INVALID"),
    ("/v2/library/tiny/blobs/sha256-" + "0" * 64, 400, "DIGEST_INVALID"),
    ("/v2/library/tiny/blobs/..", 404, None),
    ("/v2/library/tiny/blobs/sha256:..", 400, "DIGEST_INVALID"),
    ("/v2/library/../blobs/sha256:" + "0" * 64, 404, None),
])
def test_bad_names_and_digests_are_refused(live_server, path, status, code):
    url = live_server(registry=True)
    # the raw path as sent: httpx would normalise the dot segments away
    with httpx.Client(base_url=url) as c:
        req = c.build_request("GET", "/")
        req.url = req.url.copy_with(raw_path=path.encode())
        r = c.send(req)
    assert r.status_code == status, r.text
    if code:
        assert r.json()["errors"][0]["code"] == code
    assert "/tmp" not in r.text and str(Path.home()) not in r.text


def test_stored_blob_outside_blobs_dir_is_not_reachable(live_server):
    """A store file that is no blob (the manifest itself) cannot be fetched as one."""
    url = live_server(registry=True)
    with httpx.Client(base_url=url) as c:
        for name in ("manifests", "..%2Fmanifests", "sha256:..%2F..%2Fmanifests"):
            r = c.get(f"/v2/library/tiny/blobs/{name}")
            assert r.status_code in (400, 404)
            assert b"schemaVersion" not in r.content


def test_registry_is_off_by_default(live_server):
    url = live_server()
    with httpx.Client(base_url=url) as c:
        assert c.get("/v2/").status_code == 404
        assert c.get("/v2/library/tiny/manifests/latest").status_code == 404


def test_registry_setting_from_environment():
    from runtime.config import load_settings

    assert load_settings({}).registry is False
    assert load_settings({"LLMCRATE_REGISTRY": "1"}).registry is True
    assert load_settings({"LLMCRATE_REGISTRY": "0"}).registry is False
