"""The CLI's Ollama-compatible text formats: Go durations, sizes, relative times, tables, stats."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from runtime.cli.chat import go_duration, parse_parameter, render_show_info, stats_block
from runtime.cli.server import human_bytes, human_time, parse_timestamp, render_table


@pytest.mark.parametrize("ns, text", [
    (0, "0s"), (999, "999ns"), (1_500, "1.5µs"), (2_000_000, "2ms"), (123_456_789, "123.456789ms"),
    (1_000_000_000, "1s"), (1_234_567_891, "1.234567891s"), (62_500_000_000, "1m2.5s"),
    (3_600_000_000_000, "1h0m0s"), (-1_500_000, "-1.5ms"),
])
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (1023, "1023 B"), (1024, "1 KB"), (1536, "1.5 KB"), (440_000, "429 KB"),
    (5 * 1024**3, "5 GB"), (int(4.7 * 1024**3), "4.7 GB"), (2 * 1024**4, "2 TB"),
])
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_human_time() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert human_time(now + timedelta(minutes=4, seconds=30), now=now) == "4 minutes from now"
    assert human_time(now - timedelta(hours=3), now=now) == "3 hours ago"
    assert human_time(now + timedelta(seconds=50), now=now) == "50 seconds from now"
    assert human_time(now + timedelta(days=365 * 300), now=now) == "Forever"
    assert human_time(None) == "Never"


def test_parse_timestamp() -> None:
    t = parse_timestamp("2024-06-04T14:38:31.83753-07:00")
    assert t == datetime(2024, 6, 4, 21, 38, 31, 837530, tzinfo=timezone.utc)
    assert parse_timestamp("2024-06-04T14:38:31.123456789Z") == datetime(
        2024, 6, 4, 14, 38, 31, 123456, tzinfo=timezone.utc)
    assert parse_timestamp("0001-01-01T00:00:00Z") is None
    assert parse_timestamp("") is None and parse_timestamp("garbage") is None


def test_render_table() -> None:
    text = render_table(["NAME", "ID"], [["tiny:latest", "abc"], ["x", "0123456789ab"]])
    assert text.splitlines() == [
        "NAME           ID",
        "tiny:latest    abc",
        "x              0123456789ab",
    ]


def test_parse_parameter() -> None:
    assert parse_parameter("num_ctx", ["2048"]) == 2048
    assert parse_parameter("temperature", ["0.5"]) == 0.5
    assert parse_parameter("stop", ["<|a|>", "END"]) == ["<|a|>", "END"]
    assert parse_parameter("use_mmap", ["false"]) is False
    with pytest.raises(ValueError, match="unknown parameter 'bogus'"):
        parse_parameter("bogus", ["1"])
    with pytest.raises(ValueError, match=r"invalid int value \[abc\]"):
        parse_parameter("seed", ["abc"])


def test_stats_block() -> None:
    text = stats_block({"total_duration": 1_500_000_000, "load_duration": 2_000_000,
                        "prompt_eval_count": 10, "prompt_eval_duration": 500_000_000,
                        "eval_count": 20, "eval_duration": 1_000_000_000})
    assert text.splitlines() == [
        "total duration:       1.5s",
        "load duration:        2ms",
        "prompt eval count:    10 token(s)",
        "prompt eval duration: 500ms",
        "prompt eval rate:     20.00 tokens/s",
        "eval count:           20 token(s)",
        "eval duration:        1s",
        "eval rate:            20.00 tokens/s",
    ]
    assert stats_block({}) == ""


def test_render_show_info() -> None:
    text = render_show_info({
        "details": {"family": "llama", "parameter_size": "110K", "quantization_level": "F32"},
        "model_info": {"general.architecture": "llama", "llama.context_length": 2048,
                       "llama.embedding_length": 64},
        "capabilities": ["completion"], "parameters": "stop                           \"<|im_end|>\"",
        "system": "You are terse.\nVery terse.\nThird line.", "license": "MIT",
    })
    lines = text.splitlines()
    assert lines[0] == "  Model"
    assert "architecture        llama" in lines[1]
    assert "context length      2048" in text and "quantization        F32" in text
    assert "  Capabilities" in lines and "  Parameters" in lines
    assert "  System" in lines and "You are terse." in text and "..." in text
    assert "  License" in lines and "MIT" in text
