"""The CLI's Ollama-compatible text formats: Go durations, API timestamps, stats, parameters."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from runtime.cli.repl import parse_parameter
from runtime.cli.server import parse_timestamp
from runtime.cli.session import go_duration, stats_block


@pytest.mark.parametrize("ns, text", [
    (0, "0s"), (999, "999ns"), (1_500, "1.5µs"), (2_000_000, "2ms"), (123_456_789, "123.456789ms"),
    (1_000_000_000, "1s"), (1_234_567_891, "1.234567891s"), (62_500_000_000, "1m2.5s"),
    (3_600_000_000_000, "1h0m0s"), (-1_500_000, "-1.5ms"),
])
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_parse_timestamp() -> None:
    t = parse_timestamp("2024-06-04T14:38:31.83753-07:00")
    assert t == datetime(2024, 6, 4, 21, 38, 31, 837530, tzinfo=timezone.utc)
    assert parse_timestamp("2024-06-04T14:38:31.123456789Z") == datetime(
        2024, 6, 4, 14, 38, 31, 123456, tzinfo=timezone.utc)
    assert parse_timestamp("0001-01-01T00:00:00Z") is None
    assert parse_timestamp("") is None and parse_timestamp("garbage") is None


def test_parse_parameter() -> None:
    assert parse_parameter("num_ctx", ["2048"]) == 2048
    assert parse_parameter("temperature", ["0.5"]) == 0.5
    assert parse_parameter("stop", ["<|a|>", "END"]) == ["<|a|>", "END"]
    assert parse_parameter("use_mmap", ["false"]) is False
    with pytest.raises(ValueError, match='unknown parameter "bogus"'):
        parse_parameter("bogus", ["1"])
    with pytest.raises(ValueError, match='"abc" is not an integer'):
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
