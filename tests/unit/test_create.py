"""create: Modelfile -> layers exactly as Ollama lays them out, on a real GGUF."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from runtime.errors import GGUFError, ModelfileError, ModelNotFound
from runtime.models.create import create_model
from runtime.models.model import load_model_info
from runtime.models.modelfile import parse_modelfile
from runtime.models.show import list_models_json, show_model
from runtime.models.store import (
    MEDIA_CONFIG,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    Store,
)


def _create(store: Store, name: str, text: str, base: Path):
    return create_model(store, name, parse_modelfile(text), base_dir=base)


def test_layers_params_and_config(tmp_path: Path, tiny_gguf: Path) -> None:
    (tmp_path / "w.gguf").write_bytes(tiny_gguf.read_bytes())
    store = Store(tmp_path / "models")
    m = _create(store, "bot:v1", '''FROM ./w.gguf
TEMPLATE """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}<|im_start|>user
{{ .Prompt }}<|im_end|>
<|im_start|>assistant
"""
SYSTEM You are terse.
PARAMETER temperature 0.7
PARAMETER num_ctx 1024
PARAMETER stop <|im_end|>
PARAMETER stop <|im_start|>
LICENSE "MIT"
MESSAGE user hello
MESSAGE assistant hi
''', tmp_path)
    kinds = [x.media_type for x in m.layers]
    assert kinds == [MEDIA_MODEL, MEDIA_TEMPLATE, MEDIA_SYSTEM, MEDIA_LICENSE, MEDIA_PARAMS,
                     MEDIA_MESSAGES]
    model = m.layers[0]
    assert model.digest == "sha256:" + hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert model.from_ == "w.gguf"
    params = store.read_blob(m.layers_of(MEDIA_PARAMS)[0].digest)
    # Go's json.Encoder: sorted keys, HTML characters escaped, trailing newline
    assert params == (b'{"num_ctx":1024,"stop":["\\u003c|im_end|\\u003e","\\u003c|im_start|\\u003e"],'
                      b'"temperature":0.7}\n')
    assert json.loads(store.read_blob(m.layers_of(MEDIA_MESSAGES)[0].digest)) == [
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    assert m.config.media_type == MEDIA_CONFIG
    cfg = json.loads(store.read_blob(m.config.digest))
    assert cfg["model_format"] == "gguf" and cfg["model_family"] == "llama"
    assert cfg["model_families"] == ["llama"]
    assert cfg["file_type"] == "F32" and cfg["model_type"].endswith("K")
    assert m.digest == "sha256:" + hashlib.sha256(
        store.manifest_path("bot:v1").read_bytes()).hexdigest()

    info = load_model_info(store, "bot:v1")
    assert info.system == "You are terse." and info.params["stop"] == ["<|im_end|>", "<|im_start|>"]
    assert info.model_path.read_bytes() == tiny_gguf.read_bytes()
    shown = show_model(store, "bot:v1")
    assert shown["details"]["family"] == "llama"
    assert shown["model_info"]["general.architecture"] == "llama"
    assert 'stop                           "<|im_end|>"' in shown["parameters"]
    # the rendered Modelfile parses back to the same model
    again = parse_modelfile(shown["modelfile"])
    assert again.template == info.template and again.system == info.system
    assert again.parameters == info.params
    tags = list_models_json(store)
    assert tags[0]["name"] == "bot:v1" and tags[0]["digest"] == m.digest[7:]


def test_from_existing_model_merges_params_and_replaces_system(tmp_path: Path,
                                                              tiny_gguf: Path) -> None:
    store = Store(tmp_path / "models")
    base = _create(store, "base", f"FROM {tiny_gguf}\nSYSTEM one\nPARAMETER temperature 0.5\n"
                                  "PARAMETER top_k 20\n", tmp_path)
    child = _create(store, "child", "FROM base\nSYSTEM two\nPARAMETER temperature 0.9\n", tmp_path)
    assert child.layers[0] == base.layers[0], "weights are shared, not copied"
    info = load_model_info(store, "child")
    assert info.system == "two"
    # the base took ChatML's stop tokens with the template detected from the GGUF
    assert info.params == {"temperature": 0.9, "top_k": 20,
                           "stop": ["<|im_start|>", "<|im_end|>"]}
    assert len(list(store.blobs_dir.glob("sha256-*"))) >= 5


@pytest.mark.parametrize("content,match", [
    (b"NOTGGUF" + b"\0" * 100, "bad magic"),
    (b"GGU", "too short"),
])
def test_not_a_gguf_is_refused_and_store_untouched(tmp_path: Path, content: bytes,
                                                   match: str) -> None:
    (tmp_path / "bad.gguf").write_bytes(content)
    store = Store(tmp_path / "models")
    with pytest.raises(GGUFError, match=match):
        _create(store, "bad", "FROM ./bad.gguf\n", tmp_path)
    assert store.list_models() == []
    assert not store.blobs_dir.exists() or list(store.blobs_dir.iterdir()) == []


def test_truncated_gguf_is_refused(tmp_path: Path, tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    store = Store(tmp_path / "models")
    with pytest.raises(GGUFError, match=r"cut\.gguf"):
        _create(store, "cut", "FROM ./cut.gguf\n", tmp_path)
    assert store.list_models() == []


def test_from_missing_file_or_model(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    with pytest.raises(ModelfileError, match="does not exist"):
        _create(store, "x", "FROM ./missing.gguf\n", tmp_path)
    with pytest.raises(ModelNotFound, match='model "nosuchmodel" not found'):
        _create(store, "x", "FROM nosuchmodel\n", tmp_path)
    assert store.list_models() == []


def test_a_template_that_does_not_parse_is_refused_before_writing(tmp_path: Path,
                                                                  tiny_gguf: Path) -> None:
    from runtime.errors import TemplateError

    store = Store(tmp_path / "models")
    with pytest.raises(TemplateError, match=r"1:\d+"):
        _create(store, "bad", f'FROM {tiny_gguf}\nTEMPLATE "{{{{ .Prompt"\n', tmp_path)
    assert store.list_models() == []
    assert not store.blobs_dir.exists() or list(store.blobs_dir.glob("sha256-*")) == []
