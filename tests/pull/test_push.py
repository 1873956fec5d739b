"""push_model, ``/api/push`` and ``llmcrate push`` against the live fake registry on 127.0.0.1,
then a pull of what was pushed into another store."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime.errors import AuthError, ModelNotFound, RegistryError
from runtime.models.create import CreateRequest, create_from_request
from runtime.models.store import Store
from runtime.transfer.push import push_model
from runtime.transfer.registry import pull_model
from tests.api.conftest import live_server, tiny_store  # noqa: F401 - fixtures used below
from tests.fakes import FakeRegistry

make_tiny_model = sys.modules["make_tiny_model"]


def _model(store: Store, gguf: Path, name: str) -> None:
    blob = store.add_blob_file(gguf)
    create_from_request(store, name, CreateRequest(files={gguf.name: blob.digest},
                                                   system="You are terse.",
                                                   parameters={"temperature": 0.2}))


def test_push_then_pull_round_trip(store, registry: FakeRegistry, small_gguf, fast,
                                   tmp_path: Path) -> None:
    name = f"{registry.host}/team/small:v1"
    _model(store, small_gguf, name)
    events: list[dict] = []
    pushed = push_model(store, name, insecure=True, progress=lambda e: events.append(e.as_json()),
                        settings=fast, chunk_size=1 << 20)
    assert registry.pushed == ["team/small:v1"]
    assert registry.manifests["team/small:v1"] == store.resolve(name).raw
    for layer in [*pushed.layers, pushed.config]:
        assert registry.blob_file(layer.digest).read_bytes() == store.read_blob(layer.digest)
    patches = registry.requests_for("/blobs/uploads/")
    assert sum(r.method == "PATCH" for r in patches) >= 3, "the 3 MB model went up in chunks"
    statuses = [e["status"] for e in events]
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest",
                                                                      "success"]
    model_events = [e for e in events if e.get("digest") == pushed.layers[0].digest]
    assert model_events[-1]["completed"] == model_events[-1]["total"] == pushed.layers[0].size

    other = Store(tmp_path / "other")
    pulled = pull_model(other, name, insecure=True, settings=fast)
    assert pulled.digest == pushed.digest

    registry.clear_log()
    push_model(store, name, insecure=True, settings=fast)   # again: every blob is there
    assert not registry.requests_for("/blobs/uploads/")


def test_push_through_the_server_and_the_cli(live_server, tiny_store: Store,
                                             registry: FakeRegistry) -> None:
    import ollama

    url = live_server()
    name = f"{registry.host}/library/tiny:latest"
    client = ollama.Client(host=url)
    client.copy("tiny", name)
    last = list(client.push(name, insecure=True, stream=True))[-1]
    assert last.status == "success"
    assert registry.manifests["library/tiny:latest"] == tiny_store.resolve(name).raw

    from runtime.cli import main

    client.copy("tiny", f"{registry.host}/library/tiny:cli")
    out = CliRunner().invoke(main, ["push", f"{registry.host}/library/tiny:cli", "--insecure"],
                             env={"OLLAMA_HOST": url.removeprefix("http://")})
    assert out.exit_code == 0, out.output
    assert "library/tiny:cli" in registry.pushed


def test_push_errors(store, registry: FakeRegistry, small_gguf, fast) -> None:
    name = f"{registry.host}/team/small:v1"
    with pytest.raises(ModelNotFound):
        push_model(store, name, insecure=True, settings=fast)
    _model(store, small_gguf, name)
    with pytest.raises(RegistryError) as e:
        push_model(store, name, settings=fast)          # https to a plain http registry
    assert "--insecure" in (e.value.hint or "")
    registry.bearer = True
    registry.deny_token = True
    with pytest.raises(AuthError):
        push_model(store, name, insecure=True, settings=fast)
    assert registry.pushed == []


def test_push_with_bearer_auth(store, registry: FakeRegistry, small_gguf, fast) -> None:
    registry.bearer = True
    name = f"{registry.host}/team/small:v1"
    _model(store, small_gguf, name)
    push_model(store, name, insecure=True, settings=fast)
    assert registry.pushed == ["team/small:v1"]


def test_help_command() -> None:
    from runtime.cli import main

    out = CliRunner().invoke(main, ["help", "push"])
    assert out.exit_code == 0 and "Push a model to a registry" in out.output
    out = CliRunner().invoke(main, ["help"])
    assert out.exit_code == 0 and "push" in out.output and "help" in out.output
    out = CliRunner().invoke(main, ["help", "nope"])
    assert out.exit_code == 1 and 'unknown help topic "nope"' in out.output
