"""Projectors in the store: a second ``FROM ./mmproj.gguf`` becomes Ollama's projector layer;
``/api/show`` and ``llmcrate show`` report it; ``vision`` is among the capabilities."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from runtime.cli import main
from runtime.errors import LlmcrateError, ModelfileError
from runtime.models.create import create_model
from runtime.models.model import load_model_info
from runtime.models.modelfile import parse_modelfile
from runtime.models.show import show_model
from runtime.models.store import MEDIA_MODEL, MEDIA_PROJECTOR, Store
from vision.conftest import VISION


@pytest.fixture
def folder(tmp_path: Path, tiny_vision: tuple[Path, Path]) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    for p in tiny_vision:
        shutil.copy(p, d / p.name)
    return d


def _create(store: Store, name: str, text: str, base: Path):
    return create_model(store, name, parse_modelfile(text), base_dir=base)


def test_second_from_is_a_projector_layer(folder: Path, models_dir: Path):
    store = Store(models_dir)
    m = _create(store, "tv", "FROM ./model.gguf\nFROM ./mmproj.gguf\n", folder)
    # (the tiny model's ChatML chat_template also brings a template and params layer)
    assert [x.media_type for x in m.layers
            if x.media_type in (MEDIA_MODEL, MEDIA_PROJECTOR)] == [MEDIA_MODEL, MEDIA_PROJECTOR]
    info = load_model_info(store, "tv")
    assert [p.read_bytes() for p in info.projectors] == [(folder / "mmproj.gguf").read_bytes()]
    assert info.model_path.read_bytes() == (folder / "model.gguf").read_bytes()
    # the order of the FROM lines does not matter
    m2 = _create(store, "tv2", "FROM ./mmproj.gguf\nFROM ./model.gguf\n", folder)
    assert [x.digest for x in m2.layers] == [x.digest for x in m.layers]

    body = show_model(store, "tv")
    assert body["capabilities"] == ["completion", "vision"]
    pi = body["projector_info"]
    assert pi["general.architecture"] == "clip"
    assert pi["clip.vision.projection_dim"] == 64 and pi["clip.projector_type"] == "mlp"
    froms = [ln for ln in body["modelfile"].splitlines() if ln.startswith("FROM ")]
    assert froms == [f"FROM {info.model_path}", f"FROM {info.projectors[0]}"]
    assert "projector_info" not in show_model(store, _plain(store, folder))


def _plain(store: Store, folder: Path) -> str:
    _create(store, "plain", "FROM ./model.gguf\n", folder)
    return "plain"


def test_projector_added_to_a_stored_model(folder: Path, models_dir: Path):
    store = Store(models_dir)
    _create(store, "base", "FROM ./model.gguf\nSYSTEM be brief\n", folder)
    m = _create(store, "base-vision", "FROM base\nFROM ./mmproj.gguf\n", folder)
    kinds = [x.media_type for x in m.layers]
    assert kinds.count(MEDIA_MODEL) == 1 and kinds.count(MEDIA_PROJECTOR) == 1
    assert load_model_info(store, "base-vision").system == "be brief"


def test_bad_from_combinations(folder: Path, models_dir: Path, tiny_gguf: Path):
    store = Store(models_dir)
    _create(store, "base", "FROM ./model.gguf\n", folder)
    shutil.copy(tiny_gguf, folder / "other.gguf")
    with pytest.raises(LlmcrateError, match="a model can have only one of them"):
        _create(store, "x", "FROM base\nFROM ./other.gguf\n", folder)
    with pytest.raises(ModelfileError, match="can build on one model"):
        _create(store, "x", "FROM base\nFROM otherbase\n", folder)
    with pytest.raises(LlmcrateError, match="only projectors"):
        _create(store, "x", "FROM ./mmproj.gguf\n", folder)
    with pytest.raises(ModelfileError, match=r"mmproj-f16\.gguf: file does not exist"):
        _create(store, "x", "FROM ./model.gguf\nFROM ./mmproj-f16.gguf\n", folder)


def test_create_through_server_and_show(folder: Path, live_server, vision_store, monkeypatch):
    url = live_server(store=vision_store)
    monkeypatch.setenv("OLLAMA_HOST", url)
    (folder / "Modelfile").write_text("FROM ./model.gguf\nFROM ./mmproj.gguf\nSYSTEM look\n")
    r = CliRunner().invoke(main, ["create", "eyes", "-f", str(folder / "Modelfile")])
    assert r.exit_code == 0, r.output
    body = httpx.post(f"{url}/api/show", json={"model": "eyes"}).json()
    assert "vision" in body["capabilities"]
    assert body["projector_info"]["general.architecture"] == "clip"
    import ollama

    assert "vision" in (ollama.Client(host=url).show(VISION).capabilities or [])
    r = CliRunner().invoke(main, ["show", "eyes"])
    assert r.exit_code == 0, r.output
    block = r.output.split("  Projector\n", 1)[1].split("\n\n", 1)[0]
    assert [ln.split()[0] for ln in block.splitlines()] == ["architecture", "parameters",
                                                             "embedding", "dimensions"]
    assert "clip" in block and block.rstrip().endswith("64")
    # what show --modelfile prints builds the same model again (legacy /api/create form)
    mf = httpx.post(f"{url}/api/show", json={"model": "eyes"}).json()["modelfile"]
    lines = [json.loads(x) for x in httpx.post(f"{url}/api/create", json={
        "name": "eyes-again", "modelfile": mf}).text.splitlines()]
    assert lines[-1] == {"status": "success"}
    again = httpx.post(f"{url}/api/show", json={"model": "eyes-again"}).json()
    assert again["projector_info"] == body["projector_info"]
