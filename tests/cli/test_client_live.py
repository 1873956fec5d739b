"""runtime.cli.client against a live ``llmcrate serve``: models, blobs, create, copy, delete, chat."""
from __future__ import annotations

from pathlib import Path

import pytest

from cli.conftest import LiveServer
from runtime.cli.client import Client
from runtime.config import load_settings
from runtime.errors import ModelNotFound, ServerError
from runtime.models.modelfile import parse_modelfile


@pytest.fixture
def client(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setenv("OLLAMA_HOST", live_server.host)
    return Client(load_settings())


def test_list_show_version(client: Client) -> None:
    assert client.is_up()
    assert client.version()
    names = [m["name"] for m in client.list()]
    assert "tiny:latest" in names
    shown = client.show("tiny")
    assert shown["details"]["family"] == "llama"
    assert "FROM" in shown["modelfile"]


def test_create_from_modelfile_uploads_the_gguf(client: Client, tiny_gguf: Path, tmp_path: Path) -> None:
    local = tmp_path / "weights.gguf"
    local.write_bytes(tiny_gguf.read_bytes())
    (tmp_path / "Modelfile").write_text(
        "FROM ./weights.gguf\nSYSTEM You are a pirate.\nPARAMETER num_ctx 1024\nLICENSE MIT\n")
    mf = parse_modelfile((tmp_path / "Modelfile").read_bytes(), path=str(tmp_path / "Modelfile"))
    statuses = list(client.create_from_modelfile("pirate", mf, base_dir=tmp_path))
    assert statuses[0] == "gathering model components" and statuses[-1] == "success"
    shown = client.show("pirate")
    assert shown["system"] == "You are a pirate."
    assert "num_ctx" in shown["parameters"] and "1024" in shown["parameters"]
    assert "MIT" in str(shown.get("license"))
    # the same weights again: the blob is on the server already and is not sent twice
    assert client.has_blob(client.create_blob(local))


def test_copy_delete_and_missing_models(client: Client) -> None:
    client.copy("tiny", "tiny-copy")
    assert "tiny-copy:latest" in [m["name"] for m in client.list()]
    client.delete("tiny-copy")
    assert "tiny-copy:latest" not in [m["name"] for m in client.list()]
    for call in (lambda: client.delete("tiny-copy"), lambda: client.copy("nope", "x"),
                 lambda: client.show("nope")):
        with pytest.raises(ModelNotFound):
            call()
    assert client.has_blob("sha256:" + "0" * 64) is False


def test_chat_stream_and_bad_request(client: Client) -> None:
    chunks = list(client.chat("tiny", [{"role": "user", "content": "hi"}],
                              options={"num_predict": 5, "seed": 1, "temperature": 0}))
    assert chunks[-1]["done"] is True and chunks[-1]["eval_count"] <= 5
    again = list(client.chat("tiny", [{"role": "user", "content": "hi"}],
                             options={"num_predict": 5, "seed": 1, "temperature": 0}))
    text = "".join(c["message"]["content"] for c in chunks)
    assert text == "".join(c["message"]["content"] for c in again)
    with pytest.raises(ServerError) as e:
        list(client.chat("tiny", [{"role": "user", "content": "hi"}], options={"num_predict": "five"}))
    assert e.value.status == 400 and "num_predict" in str(e.value)
