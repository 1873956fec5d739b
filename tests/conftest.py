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
    # Any test that forgets to point OLLAMA_HOST at its own server must not reach a real one.
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ~440 KB llama GGUF (ChatML template, byte-level BPE) shared by the session."""
    return make_tiny_model.write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"
