"""What the server log carries (``runtime.api.server_main.configure_logging``)."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from runtime.api.server_main import configure_logging
from runtime.config import load_settings


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes process-wide loggers: put them back for the next test."""
    runtime_log, asyncio_log = logging.getLogger("runtime"), logging.getLogger("asyncio")
    level, filters = runtime_log.level, list(asyncio_log.filters)
    yield
    runtime_log.setLevel(level)
    asyncio_log.filters[:] = filters


@pytest.mark.usefixtures("restored_logging")
def test_server_log_has_llmcrate_info_and_no_left_client_noise(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging(load_settings())
    configure_logging(load_settings())              # twice (tests, restarts): one filter
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.warning("socket.send() raised exception.")
    asyncio_log.warning("Task was destroyed but it is pending!")
    logging.getLogger("runtime.serve.runner").info("request 3 cancelled after 0 of 9 prompt tokens")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("asyncio", "Task was destroyed but it is pending!"),
        ("runtime.serve.runner", "request 3 cancelled after 0 of 9 prompt tokens")]
    assert sum(type(f).__name__ == "_LeftClientNoise" for f in asyncio_log.filters) == 1
