"""Fixtures for pull tests: a live fake registry on loopback and a few-MB real GGUF."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.models.store import Store
from runtime.transfer.download import PullSettings
from tests.fakes import FakeRegistry

MB = 1_000_000
make_tiny_model = sys.modules["make_tiny_model"]  # loaded by tests/conftest.py


@pytest.fixture(scope="session")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real llama GGUF of about 3 MB (big enough for several ranged parts)."""
    return make_tiny_model.write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "small.gguf",
                                           size=3 * MB, name="small")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[FakeRegistry]:
    with FakeRegistry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def store(models_dir: Path) -> Store:
    return Store(models_dir)


@pytest.fixture
def fast() -> PullSettings:
    """Small parts (so 3 MB is 4 parts), quick retries, short stall timeout."""
    return PullSettings(min_part_size=800_000, max_parts=4, retries=3, backoff=0.01,
                        max_backoff=0.05, stall_timeout=2.0, connect_timeout=2.0)
