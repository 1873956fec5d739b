"""A split GGUF (llama.cpp's ``x-00001-of-0000N.gguf`` shards) is created as one model layer per
shard, pulled or bundled like any model, and served: the shards are linked under their split
names so llama.cpp finds them."""
from __future__ import annotations

import sys
from pathlib import Path

import ollama
import pytest

from runtime.errors import ModelfileError
from runtime.models.create import create_model
from runtime.models.model import load_model_info
from runtime.models.modelfile import parse_modelfile
from runtime.models.store import MEDIA_MODEL, Store


@pytest.fixture
def split_dir(tmp_path: Path) -> Path:
    d = tmp_path / "split"
    sys.modules["make_tiny_model"].write_tiny_gguf(d / "big.gguf", split_max_tensors=8)
    assert len(list(d.glob("big-*-of-00003.gguf"))) == 3
    return d


def test_split_gguf_is_created_whole_and_served(split_dir: Path, models_dir: Path,
                                                live_server) -> None:
    store = Store(models_dir)
    (split_dir / "Modelfile").write_text("FROM ./big-00001-of-00003.gguf\n")
    m = create_model(store, "split", parse_modelfile((split_dir / "Modelfile").read_text()),
                     base_dir=split_dir)
    shards = m.layers_of(MEDIA_MODEL)
    assert [x.from_ for x in shards] == [f"big-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    info = load_model_info(store, "split")
    assert info.model_path.name == "model-00001-of-00003.gguf"
    assert info.model_path.resolve() == store.blob_path(shards[0].digest)

    client = ollama.Client(host=live_server(store=store))
    reply = client.generate(model="split", prompt="hello", options={"num_predict": 4, "seed": 1})
    assert reply.done and reply.eval_count >= 1


def test_missing_shard_is_a_clear_error(split_dir: Path, models_dir: Path) -> None:
    (split_dir / "big-00002-of-00003.gguf").unlink()
    (split_dir / "Modelfile").write_text("FROM ./big-00001-of-00003.gguf\n")
    store = Store(models_dir)
    with pytest.raises(ModelfileError, match="missing big-00002-of-00003.gguf"):
        create_model(store, "split", parse_modelfile((split_dir / "Modelfile").read_text()),
                     base_dir=split_dir)
    assert not store.exists("split")


def test_memory_estimate_counts_every_shard(split_dir: Path) -> None:
    from runtime.serve.engine import file_size

    shards = sorted(split_dir.glob("big-*-of-00003.gguf"))
    assert file_size(shards[0]) == sum(p.stat().st_size for p in shards)
    assert file_size(shards[1]) == shards[1].stat().st_size

