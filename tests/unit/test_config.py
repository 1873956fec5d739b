from __future__ import annotations

import math

import pytest

from runtime.config import HostAddr, load_settings, parse_duration, parse_host
from runtime.errors import ConfigError


@pytest.mark.parametrize("text,seconds", [
    ("5m", 300), ("1h30m", 5400), ("30s", 30), ("0", 0), ("10", 10), ("1.5h", 5400),
    ("-1", math.inf), ("-1m", math.inf), ("250ms", 0.25), (600, 600), (-5, math.inf),
])
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5 minutes", "m5", "1x", "abc"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(bad)


@pytest.mark.parametrize("text,expected", [
    (None, HostAddr("http", "127.0.0.1", 11434)),
    ("0.0.0.0", HostAddr("http", "0.0.0.0", 11434)),
    (":8080", HostAddr("http", "127.0.0.1", 8080)),
    ("example.com:5000", HostAddr("http", "example.com", 5000)),
    ("https://example.com", HostAddr("https", "example.com", 443)),
    ("http://10.0.0.1", HostAddr("http", "10.0.0.1", 80)),
    ("[::1]:9000", HostAddr("http", "::1", 9000)),
])
def test_parse_host(text: str | None, expected: HostAddr) -> None:
    assert parse_host(text) == expected


def test_llmcrate_prefix_overrides_ollama() -> None:
    s = load_settings({"OLLAMA_NUM_PARALLEL": "2", "LLMCRATE_NUM_PARALLEL": "4",
                       "OLLAMA_MODELS": "/srv/models", "OLLAMA_KEEP_ALIVE": "24h",
                       "OLLAMA_ORIGINS": "http://a.example, http://b.example"})
    assert s.num_parallel == 4
    assert str(s.models_dir) == "/srv/models"
    assert s.keep_alive == 86400
    assert s.allowed_origins[:2] == ("http://a.example", "http://b.example")


def test_bad_numbers_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="OLLAMA_NUM_PARALLEL"):
        load_settings({"OLLAMA_NUM_PARALLEL": "two"})


@pytest.mark.parametrize("bad", ["bad:host:x", "host:port", "http://h:99999", "ftp://h"])
def test_bad_host_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="OLLAMA_HOST"):
        parse_host(bad)


def test_bare_ipv6_host() -> None:
    assert parse_host("::1") == HostAddr("http", "::1", 11434)


def test_image_encode_setting() -> None:
    assert load_settings(env={}).image_encode == "auto"
    assert load_settings(env={"LLMCRATE_IMAGE_ENCODE": "Thread"}).image_encode == "thread"
    with pytest.raises(ConfigError, match="LLMCRATE_IMAGE_ENCODE.*not auto, thread or inline"):
        load_settings(env={"LLMCRATE_IMAGE_ENCODE": "gpu"})
