"""The typed options table: Modelfile strings, API JSON values, defaults, merging."""
from __future__ import annotations

import json

import pytest

from runtime.errors import LlmcrateError
from runtime.options import (
    DEFAULT_OPTIONS,
    DEPRECATED_OPTIONS,
    OPTION_TYPES,
    RUNNER_OPTIONS,
    OptionError,
    coerce_options,
    coerce_parameter,
    default_options,
    format_value,
    merge_params,
    resolve_options,
)


def test_table_matches_ollama() -> None:
    assert set(OPTION_TYPES) == {
        "num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "num_keep", "seed",
        "num_predict", "top_k", "top_p", "min_p", "typical_p", "repeat_last_n", "temperature",
        "repeat_penalty", "presence_penalty", "frequency_penalty", "stop"}
    assert set(DEFAULT_OPTIONS) == set(OPTION_TYPES)
    assert set(OPTION_TYPES) >= RUNNER_OPTIONS
    assert not DEPRECATED_OPTIONS & set(OPTION_TYPES)
    # Ollama's api.DefaultOptions
    assert DEFAULT_OPTIONS["temperature"] == 0.8
    assert DEFAULT_OPTIONS["top_k"] == 40 and DEFAULT_OPTIONS["top_p"] == 0.9
    assert DEFAULT_OPTIONS["num_predict"] == -1 and DEFAULT_OPTIONS["seed"] == -1
    assert DEFAULT_OPTIONS["repeat_penalty"] == 1.1 and DEFAULT_OPTIONS["repeat_last_n"] == 64
    assert DEFAULT_OPTIONS["num_batch"] == 512 and DEFAULT_OPTIONS["num_gpu"] == -1
    assert DEFAULT_OPTIONS["num_keep"] == 4 and DEFAULT_OPTIONS["use_mmap"] is None
    for name, value in DEFAULT_OPTIONS.items():
        if value is not None:
            assert isinstance(value, OPTION_TYPES[name]), name


def test_engine_dataclass_defaults_come_from_the_table() -> None:
    """SamplingOptions and LoadOptions repeat no default: each equals the options table's."""
    import dataclasses
    from pathlib import Path

    from runtime.options import SAMPLER_DEFAULTS
    from runtime.serve.engine import LoadOptions, SamplingOptions

    table = {**DEFAULT_OPTIONS, **SAMPLER_DEFAULTS}
    for f in dataclasses.fields(SamplingOptions):
        expected = tuple(table[f.name]) if f.name == "stop" else table[f.name]
        assert f.default == expected, f.name
    assert set(SAMPLER_DEFAULTS) <= DEPRECATED_OPTIONS
    load = LoadOptions(model_path=Path("m.gguf"))
    assert (load.n_ctx, load.n_batch, load.n_gpu_layers, load.main_gpu) == (
        table["num_ctx"], table["num_batch"], table["num_gpu"], table["main_gpu"])
    assert load.n_threads is None and table["num_thread"] == 0      # 0: llama.cpp decides
    assert load.use_mmap is True and table["use_mmap"] is None      # None: the engine's default
    assert LoadOptions.from_options(model_path=Path("m.gguf"), options={}) == load


def test_default_options_are_fresh_copies() -> None:
    a = default_options()
    a["stop"].append("x")
    assert DEFAULT_OPTIONS["stop"] == []
    assert default_options(context_length=8192)["num_ctx"] == 8192
    assert default_options()["num_ctx"] == 4096


@pytest.mark.parametrize(("name", "raw", "value"), [
    ("num_ctx", "4096", 4096),
    ("num_ctx", "+16", 16),
    ("seed", "-1", -1),
    ("num_predict", "9223372036854775807", 2 ** 63 - 1),
    ("temperature", "0.7", 0.7),
    ("temperature", "1", 1.0),
    ("temperature", "1.", 1.0),
    ("top_p", ".95", 0.95),
    ("min_p", "1e-05", 1e-05),
    ("repeat_penalty", "-1.5E2", -150.0),
    ("use_mmap", "true", True),
    ("use_mmap", "T", True),
    ("use_mmap", "1", True),
    ("use_mmap", "False", False),
    ("use_mmap", "0", False),
    ("stop", "<|im_end|>", ["<|im_end|>"]),
    ("stop", "a b", ["a b"]),
])
def test_coerce_parameter(name: str, raw: str, value: object) -> None:
    got = coerce_parameter(name, raw)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(("name", "raw", "reason"), [
    ("num_ctx", "4k", 'invalid value for num_ctx: "4k" is not an integer'),
    ("num_ctx", "4096.0", "is not an integer"),
    ("num_ctx", "1_000", "is not an integer"),
    ("num_ctx", " 5", "is not an integer"),
    ("num_ctx", "9223372036854775808", "out of range"),
    ("temperature", "hot", 'invalid value for temperature: "hot" is not a number'),
    ("temperature", "nan", "is not a number"),
    ("temperature", "inf", "is not a number"),
    ("temperature", "1e39", "out of range"),
    ("temperature", "0x1p-2", "is not a number"),
    ("use_mmap", "yes", "is not a boolean"),
    ("num_gpu", "", "is not an integer"),
    ("Temperature", "0.5", 'unknown parameter "Temperature" (did you mean "temperature"?)'),
    ("tempreature", "0.5", 'did you mean "temperature"'),
    ("flux_capacitor", "1", 'unknown parameter "flux_capacitor"'),
    ("mirostat", "1", "deprecated"),
])
def test_coerce_parameter_errors(name: str, raw: str, reason: str) -> None:
    with pytest.raises(OptionError) as info:
        coerce_parameter(name, raw)
    assert reason in str(info.value)
    assert info.value.name == name
    assert isinstance(info.value, ValueError) and isinstance(info.value, LlmcrateError)


def test_coerce_options_types_json_values() -> None:
    opts, warnings = coerce_options({
        "temperature": 0, "top_k": 20.0, "num_ctx": 2048.9, "stop": ["a", "b"], "use_mmap": False,
        "seed": 42, "num_predict": None,
    }, strict=False)
    assert opts == {"temperature": 0.0, "top_k": 20, "num_ctx": 2048, "stop": ["a", "b"],
                    "use_mmap": False, "seed": 42}
    assert type(opts["temperature"]) is float and type(opts["top_k"]) is int
    assert warnings == []


def test_coerce_options_unknown_and_deprecated() -> None:
    opts, warnings = coerce_options({"temperature": 0.1, "bogus": 1, "mirostat": 2, "low_vram": True},
                                    strict=False)
    assert opts == {"temperature": 0.1}
    assert any('"bogus"' in w for w in warnings)
    assert any('"mirostat" is deprecated' in w for w in warnings)
    assert len(warnings) == 3
    with pytest.raises(OptionError, match='unknown option "bogus"'):
        coerce_options({"bogus": 1}, strict=True)
    # deprecated ones are only warned about, even when strict
    opts, warnings = coerce_options({"penalize_newline": True}, strict=True)
    assert opts == {} and len(warnings) == 1


@pytest.mark.parametrize(("options", "reason"), [
    ({"temperature": "0.5"}, 'option "temperature" must be a number, not a string'),
    ({"temperature": True}, "must be a number, not a boolean"),
    ({"num_ctx": "4096"}, 'option "num_ctx" must be an integer, not a string'),
    ({"num_ctx": True}, "must be an integer, not a boolean"),
    ({"num_ctx": float("nan")}, "must be an integer"),
    ({"use_mmap": 1}, 'option "use_mmap" must be a boolean (true or false), not a number'),
    ({"stop": "\n"}, 'option "stop" must be an array of strings, not a string'),
    ({"stop": ["a", 1]}, "not an array with non-string items"),
    ({"top_p": {"x": 1}}, "not an object"),
    ({"top_p": float("inf")}, "must be a number"),
])
def test_coerce_options_wrong_types(options: dict, reason: str) -> None:
    with pytest.raises(OptionError) as info:
        coerce_options(options, strict=False)
    assert reason in str(info.value)


def test_coerce_options_empty_and_not_an_object() -> None:
    assert coerce_options(None, strict=False) == ({}, [])
    assert coerce_options({}, strict=True) == ({}, [])
    with pytest.raises(OptionError, match="options must be an object"):
        coerce_options(["temperature"], strict=False)  # type: ignore[arg-type]


def test_merge_params_child_wins_and_stop_replaces() -> None:
    parent = {"temperature": 0.7, "stop": ["<|im_end|>", "<|im_start|>"], "num_ctx": 2048}
    child = {"temperature": 0.2, "stop": ["###"]}
    merged = merge_params(parent, child)
    assert merged == {"temperature": 0.2, "stop": ["###"], "num_ctx": 2048}
    merged["stop"].append("x")
    assert child["stop"] == ["###"] and parent["stop"] == ["<|im_end|>", "<|im_start|>"]
    assert merge_params(parent, {}) == parent and merge_params(parent, {}) is not parent
    assert merge_params({}, child) == child


def test_resolve_options_layers() -> None:
    opts = resolve_options({"temperature": 0.2, "stop": ["a"]}, None, {"temperature": 0.0},
                           context_length=8192)
    assert opts["temperature"] == 0.0 and opts["stop"] == ["a"] and opts["num_ctx"] == 8192
    assert opts["top_k"] == 40


@pytest.mark.parametrize(("value", "text"), [
    (True, "true"), (False, "false"), (4096, "4096"), (-1, "-1"),
    (0.7, "0.7"), (1.0, "1"), (0.0, "0"), (1e-05, "1e-05"), (0.0001, "0.0001"),
    (100000.0, "100000"), (1e6, "1e+06"), (1234567.0, "1.234567e+06"), (-2.5, "-2.5"),
    (0.95, "0.95"), ("<|im_end|>", "<|im_end|>"),
])
def test_format_value_is_gos_percent_v(value: object, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize("value", [0.7, 0.1 + 0.2, 1e-7, 123.456, 3.0e38, 5e-324 * 1e10, 1.1])
def test_formatted_floats_parse_back_exactly(value: float) -> None:
    assert coerce_parameter("temperature", format_value(value)) == value
    assert json.loads(json.dumps(value)) == value
