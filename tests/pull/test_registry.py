"""pull_model against a live fake registry on 127.0.0.1: protocol, redirects, auth, faults, resume."""
from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from runtime.errors import AuthError, DigestMismatch, ModelNotFound, RegistryError
from runtime.models.store import Store
from runtime.transfer.download import PullSettings, state_path
from runtime.transfer.registry import parse_challenge, pull_model
from tests.fakes import FakeRegistry
from tests.fakes.registry import TOKEN

TEMPLATE = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ .Prompt }}"


def _publish(reg: FakeRegistry, gguf: Path, name: str = "library/small:latest"):
    return reg.add_model(name, gguf, template=TEMPLATE, system="You are terse.",
                         params={"stop": ["<|im_end|>"], "temperature": 0.2},
                         license="Apache-2.0")


def _assert_complete(store: Store, reg: FakeRegistry, model, name: str) -> None:
    stored = store.resolve(name)
    assert stored.raw == model.manifest  # exact bytes as served (indented JSON)
    assert stored.digest == model.digest
    for digest, src in model.blobs.items():
        assert store.blob_path(digest).read_bytes() == src.read_bytes()
    assert not list(store.blobs_dir.glob("*-partial*")), "partials left behind"


def test_pull_plain_200_stores_every_layer_and_exact_manifest(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf)
    events: list[dict] = []
    name = f"{registry.host}/library/small:latest"
    m = pull_model(store, name, insecure=True, progress=lambda e: events.append(e.as_json()),
                   settings=fast)
    _assert_complete(store, registry, model, name)
    assert m.digest == model.digest
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer = next(e for e in reversed(events) if e.get("digest") == model.model_digest)
    assert layer["status"] == f"pulling {model.model_digest[7:19]}"
    assert layer["completed"] == layer["total"] == small_gguf.stat().st_size
    # the model blob came in ranged parts, each byte once
    ranged = [r for r in registry.requests_for(model.model_digest) if r.range != "bytes=0-0"]
    assert len(ranged) == 4 and all(r.status == 206 for r in ranged)
    assert registry.bytes_served(model.model_digest) == small_gguf.stat().st_size + 1
    assert [e.name.display for e in store.list_models()] == [name]
    ua = registry.requests[0].headers.get("User-Agent", "")
    assert ua.startswith("llmcrate/")
    assert registry.requests[0].headers.get("Accept") == \
        "application/vnd.docker.distribution.manifest.v2+json"


@pytest.mark.parametrize("code", [307, 302, 301, 303, 308])
def test_redirect_to_cdn_on_another_port(store, registry, small_gguf, fast, code):
    model = _publish(registry, small_gguf)
    registry.redirect_to_cdn = code
    registry.bearer = True  # the token must go to the registry, never to the CDN
    name = f"{registry.host}/library/small:latest"
    pull_model(store, name, insecure=True, settings=fast)
    _assert_complete(store, registry, model, name)
    cdn = [r for r in registry.requests if r.server == "cdn"]
    assert cdn and all(r.authorization is None for r in cdn)
    assert all(r.status in (200, 206) for r in cdn)
    blob_reqs = [r for r in registry.requests if r.server == "registry" and "/blobs/" in r.path]
    assert all(r.status == code for r in blob_reqs if r.authorization)


def test_bearer_challenge_fetches_token_from_realm(store, registry, small_gguf, fast):
    _publish(registry, small_gguf)
    registry.bearer = True
    pull_model(store, f"{registry.host}/library/small:latest", insecure=True, settings=fast)
    token_reqs = registry.requests_for("/token")
    assert len(token_reqs) == 1
    assert "scope=repository%3Alibrary%2Fsmall%3Apull" in token_reqs[0].path
    assert "service=fake-registry" in token_reqs[0].path
    v2 = [r for r in registry.requests if r.path.startswith("/v2/") and r.status < 400]
    assert v2 and all(r.authorization == f"Bearer {TOKEN}" for r in v2)


def test_auth_failure_is_one_clear_error_and_leaves_nothing(store, registry, small_gguf, fast):
    _publish(registry, small_gguf)
    registry.bearer = True
    registry.deny_token = True
    with pytest.raises(AuthError, match=r"authentication failed.*401"):
        pull_model(store, f"{registry.host}/library/small:latest", insecure=True, settings=fast)
    assert store.list_models() == []


def test_unknown_model_is_model_not_found(store, registry, fast):
    with pytest.raises(ModelNotFound, match=rf'model "{registry.host}/library/nope:latest" not found'):
        pull_model(store, f"{registry.host}/library/nope:latest", insecure=True, settings=fast)
    assert store.list_models() == []


def test_unreachable_host_says_which_and_why(store, fast):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    with pytest.raises(RegistryError) as err:
        pull_model(store, f"127.0.0.1:{port}/library/x:latest", insecure=True,
                   settings=dataclasses.replace(fast, retries=1))
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "connection refused" in str(err.value)


def test_http_registry_needs_insecure(store, registry, small_gguf, fast):
    _publish(registry, small_gguf)
    with pytest.raises(RegistryError) as err:
        pull_model(store, f"{registry.host}/library/small:latest",
                   settings=dataclasses.replace(fast, retries=0))
    assert registry.host in str(err.value)
    assert err.value.hint and "--insecure" in err.value.hint
    with pytest.raises(RegistryError, match="insecure protocol http"):
        pull_model(store, f"http://{registry.host}/library/small:latest", settings=fast)


def test_dropped_connections_resume_without_refetching(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf)
    registry.faults.drop_after_bytes = 300_000  # every response dies after 300 kB
    name = f"{registry.host}/library/small:latest"
    pull_model(store, name, insecure=True, settings=fast)
    _assert_complete(store, registry, model, name)
    size = small_gguf.stat().st_size
    assert registry.bytes_served(model.model_digest) <= size + 1  # no byte fetched twice
    assert len(registry.requests_for(model.model_digest)) > 10


def test_truncated_body_fails_then_rerun_resumes(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf)
    size = small_gguf.stat().st_size
    registry.faults.drop_after_bytes = 500_000
    name = f"{registry.host}/library/small:latest"
    with pytest.raises(RegistryError, match="truncated body"):
        pull_model(store, name, insecure=True, settings=dataclasses.replace(fast, retries=0))
    assert store.list_models() == []
    partial = store.partial_path(model.model_digest)
    saved = json.loads(state_path(partial).read_text())
    done = sum(p["completed"] for p in saved["parts"])
    assert done >= 500_000
    first = registry.bytes_served(model.model_digest)
    registry.faults.drop_after_bytes = None
    pull_model(store, name, insecure=True, settings=fast)
    _assert_complete(store, registry, model, name)
    second = registry.bytes_served(model.model_digest) - first
    assert second <= size - done + 1


def test_wrong_digest_deletes_blob_and_says_digest_mismatch(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf)
    registry.faults.wrong_digest = True
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        pull_model(store, f"{registry.host}/library/small:latest", insecure=True, settings=fast)
    assert not store.has_blob(model.model_digest)
    assert not store.partial_path(model.model_digest).exists()
    assert not state_path(store.partial_path(model.model_digest)).exists()
    assert store.list_models() == []


def test_lying_content_length_still_yields_the_exact_blob(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf)
    registry.faults.lie_content_length = 4096
    name = f"{registry.host}/library/small:latest"
    pull_model(store, name, insecure=True, settings=fast)
    _assert_complete(store, registry, model, name)


def test_manifest_size_that_disagrees_with_the_blob_is_refused(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf)
    doc = json.loads(model.manifest)
    doc["layers"][0]["size"] += 10
    registry.manifests["library/small:latest"] = json.dumps(doc).encode()
    with pytest.raises(RegistryError, match="the manifest says"):
        pull_model(store, f"{registry.host}/library/small:latest", insecure=True, settings=fast)
    assert store.list_models() == []


def test_stalled_part_is_retried(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf)
    registry.faults.stall_after_bytes = 100_000
    registry.faults.stall_seconds = 120.0     # far beyond the 0.5 s stall timeout
    registry.faults.stall_times = 2
    name = f"{registry.host}/library/small:latest"
    pull_model(store, name, insecure=True, settings=dataclasses.replace(fast, stall_timeout=0.5))
    _assert_complete(store, registry, model, name)
    # the pull is complete while every stalled response is still silent: the client gave up on
    # them and fetched those bytes again instead of sitting the stall out
    stalled = [r for r in registry.requests if r.stalled]
    assert stalled and not any(r.stall_over for r in stalled)


def test_server_errors_are_retried(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf)
    registry.fail_next = 3
    name = f"{registry.host}/library/small:latest"
    pull_model(store, name, insecure=True, settings=fast)
    _assert_complete(store, registry, model, name)
    assert sum(r.status == 503 for r in registry.requests) == 3


def test_bandwidth_cap_is_respected(store, registry, tmp_path, fast):
    blob = tmp_path / "two-mb.gguf"
    blob.write_bytes(b"GGUF" + bytes(2_000_000))
    registry.add_model("library/capped", blob)
    t0 = time.monotonic()
    pull_model(store, f"{registry.host}/library/capped", insecure=True,
               settings=dataclasses.replace(fast, bandwidth_limit=1_000_000))
    assert time.monotonic() - t0 >= 1.5


def test_shared_and_stored_blobs_are_fetched_once(store, registry, small_gguf, fast):
    a = registry.add_model("library/a", small_gguf, template=TEMPLATE,
                           extra=[("projector", small_gguf)])  # same digest twice in one manifest
    b = registry.add_model("library/b", small_gguf, template=TEMPLATE, system="other")
    size = small_gguf.stat().st_size
    pull_model(store, f"{registry.host}/library/a", insecure=True, settings=fast)
    assert registry.bytes_served(a.model_digest) == size + 1
    pull_model(store, f"{registry.host}/library/b", insecure=True, settings=fast)
    assert registry.bytes_served(b.model_digest) == size + 1  # already stored: skipped
    assert len(store.list_models()) == 2


def test_corrupt_blob_in_store_is_fetched_again(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf)
    name = f"{registry.host}/library/small:latest"
    pull_model(store, name, insecure=True, settings=fast)
    p = store.blob_path(model.model_digest)
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    pull_model(store, name, insecure=True, settings=fast)
    _assert_complete(store, registry, model, name)


def test_concurrent_pulls_share_one_download(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf)
    registry.faults.slow = 3_000_000
    name = f"{registry.host}/library/small:latest"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pull_model(Store(store.root), name, insecure=True, settings=fast)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    _assert_complete(store, registry, model, name)
    assert registry.bytes_served(model.model_digest) <= small_gguf.stat().st_size + 2


def test_mirror_setting_serves_a_default_registry_name(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf, name="library/small:latest")
    settings = PullSettings.from_env({"LLMCRATE_REGISTRY_MIRRORS":
                                      f"registry.ollama.ai={registry.base_url}"},
                                     max_parts=2, backoff=0.01)
    pull_model(store, "small", settings=settings)
    assert store.resolve("small:latest").raw == model.manifest


def test_parse_challenge() -> None:
    h = 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'
    assert parse_challenge(h) == {"realm": "https://auth.example/token",
                                  "service": "registry.example",
                                  "scope": "repository:a/b:pull"}


def test_pull_by_manifest_digest(store, registry, small_gguf, fast):
    model = _publish(registry, small_gguf)
    name = f"{registry.host}/library/small:latest@{model.digest}"
    m = pull_model(store, name, insecure=True, settings=fast)
    assert m.digest == model.digest
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ModelNotFound):
        pull_model(store, f"{registry.host}/library/small:latest@{wrong}", insecure=True,
                   settings=fast)


def test_full_disk_is_refused_before_downloading(store, registry, small_gguf, fast, monkeypatch):
    import shutil
    from collections import namedtuple

    from runtime.errors import InsufficientSpace

    model = _publish(registry, small_gguf)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(InsufficientSpace, match="not enough disk space"):
        pull_model(store, f"{registry.host}/library/small:latest", insecure=True, settings=fast)
    assert registry.bytes_served(model.model_digest) == 0
    assert store.list_models() == []


def test_connection_ramp_adds_connections_only_while_they_pay():
    from runtime.transfer.download import ConnectionRamp

    # a CDN capping each connection at 10 MB/s: every new connection adds 10 MB/s
    ramp, t, done, added = ConnectionRamp(limit=16), 0.0, 0, 0
    ramp.observe(t, done)
    for _ in range(30):
        t += 1.0
        done += int(10e6 * ramp.workers)
        added += ramp.observe(t, done)
    assert ramp.workers == 16 and added == 15

    # loopback / a LAN mirror: the CPU is the limit, a second connection gains nothing
    ramp, t, done = ConnectionRamp(limit=16), 0.0, 0
    ramp.observe(t, done)
    for _ in range(30):
        t += 1.0
        done += int(900e6)
        ramp.observe(t, done)
    assert ramp.workers == 2

    assert not ConnectionRamp(limit=1).observe(5.0, 100)


def test_connections_ramp_up_against_a_per_connection_throttle(store, registry, small_gguf):
    """A CDN that caps each connection (here 0.5 MB/s): the pull opens more connections as they
    pay. Counted on the server (the most part requests in flight at once), never timed."""
    model = _publish(registry, small_gguf)
    registry.faults.slow = 500_000
    settings = PullSettings(min_part_size=300_000, max_parts=10, retries=3, backoff=0.01,
                            stall_timeout=5.0, connect_timeout=2.0)
    name = f"{registry.host}/library/small:latest"
    pull_model(store, name, insecure=True, settings=settings)
    _assert_complete(store, registry, model, name)
    parts = [r for r in registry.requests_for(model.model_digest) if r.range != "bytes=0-0"]
    # each part takes ~0.6 s at 0.5 MB/s; its last 0.1 s are not counted, so the moment between
    # one part's last write and the next part's request (a thread switch) is not an overlap
    events = sorted([(r.started, 1) for r in parts]
                    + [(max(r.started, r.ended - 0.1), -1) for r in parts])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak >= 2, "one connection at a time: the pull did not ramp up"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_manifest_is_refused_without_reading_it_whole(store, registry, small_gguf,
                                                                 fast, chunked):
    model = _publish(registry, small_gguf)
    # valid JSON, padded past the cap: a reader without one would store it
    registry.manifests["library/small:latest"] = model.manifest + b" " * (64 << 20)
    registry.chunked_manifests = chunked
    with pytest.raises(RegistryError, match="larger than 4 MiB"):
        pull_model(store, f"{registry.host}/library/small:latest", insecure=True, settings=fast)
    assert store.list_models() == []
    if chunked:                                # no length announced: the client hung up early
        assert registry.requests_for("/manifests/")[-1].sent < (64 << 20)


@pytest.mark.parametrize("size", [-1, 1 << 62])
def test_impossible_layer_size_is_a_clear_error(store, registry, small_gguf, fast, size):
    model = _publish(registry, small_gguf)
    doc = json.loads(model.manifest)
    doc["layers"][0]["size"] = size
    registry.manifests["library/small:latest"] = json.dumps(doc).encode()
    with pytest.raises(RegistryError, match=f"impossible size {size}"):
        pull_model(store, f"{registry.host}/library/small:latest", insecure=True, settings=fast)
    assert store.list_models() == []
    assert not list(store.blobs_dir.glob("*-partial*"))


def test_name_resolution_failure_fails_at_once_with_a_fitting_hint(store, fast, caplog):
    """No network: a DNS failure is not retried (six retries cost a minute) and the hint says what
    to do offline; transient errors keep their retries (test_server_errors_are_retried)."""
    import logging

    caplog.set_level(logging.INFO, logger="runtime.transfer.registry")
    with pytest.raises(RegistryError) as err:      # .invalid never resolves (RFC 6761)
        pull_model(store, "llmcrate-test.invalid/library/x:latest",
                   settings=dataclasses.replace(fast, retries=5))
    assert "cannot resolve llmcrate-test.invalid" in str(err.value)
    assert err.value.hint and "online host" in err.value.hint and "--insecure" not in err.value.hint
    assert "retrying" not in caplog.text
