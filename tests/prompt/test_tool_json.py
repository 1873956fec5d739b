"""Tool JSON handed to templates is what Go's encoding/json writes for Ollama's template structs
(template.templateToolFunction: ``description`` has no omitempty)."""
from __future__ import annotations

import logging

from runtime.prompt import execute_ollama

TOOL = {"type": "function", "function": {
    "name": "ping", "parameters": {"type": "object", "properties": {
        "host": {"type": "string"}}}}}


def test_an_empty_description_is_written_as_empty_string() -> None:
    out = execute_ollama("{{ .Tools }}{{ range .Messages }}{{ end }}",
                         messages=[{"role": "user", "content": "hi"}], tools=[TOOL])
    assert out == ('[{"type":"function","function":{"name":"ping","description":"",'
                   '"parameters":{"type":"object","properties":{"host":{"type":"string"}}}}}]')


def test_ollama_debug_turns_on_llmcrate_debug_lines() -> None:
    from runtime.api.server_main import configure_logging
    from runtime.config import load_settings

    logger = logging.getLogger("runtime")
    before = logger.level
    try:
        logger.setLevel(logging.NOTSET)
        configure_logging(load_settings(env={"OLLAMA_DEBUG": "0"}))
        assert logger.level == logging.INFO          # the server log: INFO lines, no debug
        assert not logging.getLogger("runtime.api.prompting").isEnabledFor(logging.DEBUG)
        configure_logging(load_settings(env={"OLLAMA_DEBUG": "1"}))
        assert logging.getLogger("runtime.api.prompting").isEnabledFor(logging.DEBUG)
    finally:
        logger.setLevel(before)
