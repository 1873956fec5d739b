"""The GGUF header reader (runtime.models.gguf_header) and the cached facts on top (runtime.models.gguf_info),
checked against the ``gguf`` package's own GGUFReader on real files."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from runtime.errors import GGUFError
from runtime.models import gguf_info
from runtime.models.gguf_header import GGML_TYPES, SkippedArray, read_header
from runtime.models.gguf_info import clear_cache, read_gguf_info

make_tiny_model = sys.modules["make_tiny_model"]


def _reference(path: Path) -> tuple[dict, list[tuple]]:
    from gguf import GGUFReader

    reader = GGUFReader(str(path), "r")
    kv = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    tensors = [(t.name, int(t.n_elements), int(t.tensor_type), int(t.data_offset))
               for t in reader.tensors]
    return kv, tensors


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= 1e-6 * max(abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("which", ["tiny", "smollm2"])
def test_verbose_read_equals_the_gguf_package(which: str, tiny_gguf: Path,
                                              request: pytest.FixtureRequest) -> None:
    path = tiny_gguf if which == "tiny" else request.getfixturevalue("smollm2_gguf")
    ref_kv, ref_tensors = _reference(path)
    head = read_header(str(path), max_array=None)
    assert set(head.kv) == set(ref_kv)
    diff = [k for k in ref_kv if not _same(head.kv[k], ref_kv[k])]
    assert not diff, diff
    mine = [(t.name, t.n_elements, t.type_id, t.offset) for t in head.tensors]
    assert mine == ref_tensors


def test_type_table_matches_the_gguf_package() -> None:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    for type_id, (name, block, size) in GGML_TYPES.items():
        if name == "Q8_1":   # gguf-py still lists the old float-scale block (40); ggml's is 36
            continue
        qt = GGMLQuantizationType(type_id)
        assert qt.name == name and GGML_QUANT_SIZES[qt] == (block, size)


def test_plain_read_skips_the_vocabulary_but_knows_special_tokens(smollm2_gguf: Path) -> None:
    info = read_gguf_info(smollm2_gguf)
    tokens = info.kv["tokenizer.ggml.tokens"]
    assert isinstance(tokens, SkippedArray) and tokens == [] and tokens.length == 49152
    assert info.token("eos") == "<|im_end|>" and info.token("bos") == "<|im_start|>"
    assert info.architecture == "llama" and info.file_type == "Q4_1"
    assert info.parameter_count == 134515008 and info.context_length == 8192
    assert "<|im_start|>" in (info.chat_template or "")
    verbose = read_gguf_info(smollm2_gguf, verbose=True)
    assert len(verbose.kv["tokenizer.ggml.tokens"]) == 49152
    assert verbose.kv["tokenizer.ggml.tokens"][2] == "<|im_end|>"


def test_model_info_arrays_are_empty_lists_unless_verbose(smollm2_gguf: Path) -> None:
    mi = read_gguf_info(smollm2_gguf).model_info()
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"):
        assert mi[key] == [], key                 # Ollama writes [], clients call len() on it
    assert mi["general.languages"] == ["en"]      # short arrays stay
    assert "tokenizer.chat_template" not in mi
    full = read_gguf_info(smollm2_gguf, verbose=True).model_info(verbose=True)
    assert len(full["tokenizer.ggml.merges"]) > 40000


def test_header_facts_are_read_once_per_blob(tiny_gguf: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.models.store import Store

    store = Store(tmp_path / "models")
    blob = store.add_blob_file(tiny_gguf)
    path = store.blob_path(blob.digest)
    clear_cache()
    first = read_gguf_info(path)
    first.kv["general.architecture"] = "changed"    # a caller's copy, not the cache's
    first.parameter_count += 1

    def fail(*_a: object, **_k: object) -> None:
        raise AssertionError("header read again")

    monkeypatch.setattr(gguf_info, "read_header", fail)
    again = read_gguf_info(path)
    assert again.kv["general.architecture"] == "llama"
    assert again.parameter_count == first.parameter_count - 1
    link = tmp_path / "model-00001-of-00001.gguf"     # split shards are links to blobs
    link.symlink_to(path)
    assert read_gguf_info(link).architecture == "llama"
    assert gguf_info.cache_key(link) == gguf_info.cache_key(path)


def test_a_changed_plain_file_is_read_again(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    make_tiny_model.write_tiny_gguf(p, seed=1)
    assert read_gguf_info(p).chat_template is not None
    make_tiny_model.write_tiny_gguf(p, seed=1, chat_template=None)
    assert read_gguf_info(p).chat_template is None


def _header(*, version: int = 3, n_tensors: int = 0, kvs: bytes = b"", n_kv: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + kvs


def _kv_string(key: str, value: bytes, *, length: int | None = None) -> bytes:
    k = key.encode()
    return (struct.pack("<Q", len(k)) + k + struct.pack("<I", 8)
            + struct.pack("<Q", len(value) if length is None else length) + value)


@pytest.mark.parametrize("data,match", [
    (b"", "too short"),
    (_header(version=1), "version 1"),
    (_header(n_kv=1), "ends early"),
    (_header(n_kv=1, kvs=_kv_string("general.architecture", b"llama", length=1 << 60)),
     "ends early"),
    (_header(n_kv=1 << 62), "implausible"),
    (_header(n_kv=1, kvs=struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99)),
     "unknown value type"),
    (_header(), "general.architecture is missing"),
])
def test_malformed_headers_are_one_clear_error(tmp_path: Path, data: bytes, match: str) -> None:
    p = tmp_path / "bad.gguf"
    p.write_bytes(data)
    with pytest.raises(GGUFError, match=match):
        read_gguf_info(p)


def test_truncated_tensor_data_is_refused(tmp_path: Path, tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(data[:-100])
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf_info(p)
