"""runtime.cli.backend: chosen once, the server's or the store's, and both answer alike."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cli.conftest import LiveServer
from runtime.cli.backend import ClientBackend, StoreBackend, open_backend
from runtime.config import load_settings
from runtime.errors import ModelNotFound, ServerUnavailable
from runtime.progress import ProgressEvent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_server_means_the_store(tmp_path: Path) -> None:
    settings = load_settings({"OLLAMA_HOST": f"127.0.0.1:{_free_port()}",
                              "OLLAMA_MODELS": str(tmp_path / "models")})
    with open_backend(settings) as backend:
        assert isinstance(backend, StoreBackend)
        assert backend.list_models() == []
        with pytest.raises(ModelNotFound):
            backend.show("nope")
        with pytest.raises(ServerUnavailable):   # only a server has loaded models
            backend.ps()


def test_server_and_store_backends_answer_alike(live_server: LiveServer, tmp_path: Path) -> None:
    settings = load_settings({"OLLAMA_HOST": live_server.host,
                              "OLLAMA_MODELS": str(live_server.models)})
    with open_backend(settings) as server, open_backend(settings, prefer="store") as store:
        assert isinstance(server, ClientBackend) and isinstance(store, StoreBackend)
        rows = {m.name: m for m in server.list_models()}
        local = {m.name: m for m in store.list_models()}
        assert rows.keys() == local.keys() and "tiny:latest" in rows
        for name, row in rows.items():
            assert (row.short_id, row.size) == (local[name].short_id, local[name].size)
            assert row.modified == pytest.approx(local[name].modified, abs=1)
        assert server.show("tiny")["details"] == store.show("tiny")["details"]

        events: list[ProgressEvent] = []
        (tmp_path / "Modelfile").write_text("FROM tiny\nSYSTEM made through the server\n")
        from runtime.models.modelfile import parse_modelfile

        mf = parse_modelfile((tmp_path / "Modelfile").read_text())
        server.create("made", mf, base_dir=tmp_path, progress=events.append)
        assert events[-1] == ProgressEvent("success")
        assert store.show("made")["system"] == "made through the server"
        server.copy("made", "made2")
        store.delete("made")
        server.delete("made2")
        assert "made2:latest" not in {m.name for m in store.list_models()}
