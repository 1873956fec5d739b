"""A store holding a tiny vision model (language model + projector layer) for the live server."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import CHATML_TOOLS_TEMPLATE, live_server, tiny_store  # noqa: F401

VISION = "tiny-vision:latest"


def build_vision_store(models_dir: Path, tiny_vision: tuple[Path, Path]) -> Any:
    from runtime.models.create import CreateRequest, create_from_request
    from runtime.models.store import Store

    store = Store(models_dir)
    files = {p.name: store.add_blob_file(p).digest for p in tiny_vision}
    create_from_request(store, VISION, CreateRequest(
        files=files, template=CHATML_TOOLS_TEMPLATE, parameters={"stop": ["<|im_end|>"]}))
    return store


@pytest.fixture
def vision_store(tiny_store: Any,
                  models_dir: Path, tiny_vision: tuple[Path, Path]) -> Any:
    """The test's store with ``tiny:latest`` and ``tiny-vision:latest``."""
    return build_vision_store(models_dir, tiny_vision)
