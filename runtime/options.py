"""The typed table of model options, shared by Modelfile ``PARAMETER`` lines and API ``options``.

It follows Ollama's ``api.Options`` and ``api.Runner`` (``api/types.go``): the same names, types
and defaults. Modelfile values arrive as strings and are parsed strictly, as Ollama's
``FormatParams`` does (``strconv.ParseInt``/``ParseFloat``/``ParseBool``); an unknown name is an
error there. API values arrive as JSON and are checked as Ollama's ``Options.FromMap`` does:
an unknown name is a warning and is dropped, a value of the wrong type is an error.
Parameters Ollama has retired (``parser.deprecatedParameters``) are warned about and ignored
in both places.
"""
from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from runtime.errors import LlmcrateError

#: name -> type: int, float, bool, str or list (a list of strings).
OPTION_TYPES: dict[str, type] = {
    # Runner options: fixed when the model is loaded.
    "num_ctx": int,
    "num_batch": int,
    "num_gpu": int,
    "main_gpu": int,
    "use_mmap": bool,
    "num_thread": int,
    # Predict options: per request.
    "num_keep": int,
    "seed": int,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "typical_p": float,
    "repeat_last_n": int,
    "temperature": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "stop": list,
}

#: Options that only take effect when a model is loaded (changing them means a reload).
RUNNER_OPTIONS = frozenset({"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread"})

#: Retired by Ollama: accepted, warned about and ignored.
DEPRECATED_OPTIONS = frozenset({
    "penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock",
    "mirostat", "mirostat_tau", "mirostat_eta",
})

#: Ollama's defaults (``api.DefaultOptions``). num_ctx follows OLLAMA_CONTEXT_LENGTH (4096 unset);
#: use_mmap None means "let the engine decide". Do not mutate: use :func:`default_options`.
DEFAULT_OPTIONS: dict[str, Any] = {
    "num_ctx": 4096,
    "num_batch": 512,
    "num_gpu": -1,
    "main_gpu": 0,
    "use_mmap": None,
    "num_thread": 0,
    "num_keep": 4,
    "seed": -1,
    "num_predict": -1,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_last_n": 64,
    "temperature": 0.8,
    "repeat_penalty": 1.1,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "stop": [],
}

#: Sampler knobs Ollama has retired (``DEPRECATED_OPTIONS``: requests and Modelfiles cannot set
#: them) that the runner's sampler still has; their defaults live here beside Ollama's.
SAMPLER_DEFAULTS: dict[str, Any] = {"mirostat": 0, "mirostat_tau": 5.0, "mirostat_eta": 0.1}

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
_FLOAT32_MAX = 3.4028234663852886e38
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "a boolean (true or false)",
               str: "a string", list: "an array of strings"}


class OptionError(LlmcrateError, ValueError):
    """A bad option or parameter: unknown name, or a value of the wrong type."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(reason)


def default_options(*, context_length: int | None = None) -> dict[str, Any]:
    """A fresh copy of Ollama's defaults, with num_ctx from the settings when given."""
    opts = copy.deepcopy(DEFAULT_OPTIONS)
    if context_length is not None:
        opts["num_ctx"] = context_length
    return opts


def is_deprecated(name: str) -> bool:
    return name in DEPRECATED_OPTIONS


def _unknown(name: str, what: str) -> OptionError:
    close = difflib.get_close_matches(name, OPTION_TYPES, n=1)
    if not close:
        close = [k for k in OPTION_TYPES if k == name.lower()]
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return OptionError(name, f'unknown {what} "{name}"{hint}')


def coerce_parameter(name: str, raw: str) -> Any:
    """Turn one Modelfile ``PARAMETER name value`` into its typed value.

    Args:
        name: the parameter name, exactly as written (names are case-sensitive).
        raw: the value as written, already unquoted.

    Returns:
        int, float, bool or, for list-typed parameters like ``stop``, a one-item list.

    Raises:
        OptionError: unknown or deprecated name, or a value that does not parse as its type.
    """
    if name in DEPRECATED_OPTIONS:
        raise OptionError(name, f'parameter "{name}" is deprecated and ignored')
    kind = OPTION_TYPES.get(name)
    if kind is None:
        raise _unknown(name, "parameter")
    if kind is list:
        return [raw]
    if kind is str:
        return raw
    if kind is bool:
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise OptionError(name, f'invalid value for {name}: "{raw}" is not a boolean (true or false)')
    if kind is int:
        if not _INT.fullmatch(raw):
            raise OptionError(name, f'invalid value for {name}: "{raw}" is not an integer')
        value = int(raw)
        if not _INT64[0] <= value <= _INT64[1]:
            raise OptionError(name, f'invalid value for {name}: "{raw}" is out of range')
        return value
    # float
    if not _FLOAT.fullmatch(raw):
        raise OptionError(name, f'invalid value for {name}: "{raw}" is not a number')
    number = float(raw)
    if math.isinf(number) or abs(number) > _FLOAT32_MAX:
        raise OptionError(name, f'invalid value for {name}: "{raw}" is out of range')
    return number


def _coerce_json(name: str, value: Any) -> Any:
    kind = OPTION_TYPES[name]
    wrong = OptionError(name, f'option "{name}" must be {_TYPE_WORDS[kind]}, not {_json_kind(value)}')
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        if isinstance(value, float):
            if not math.isfinite(value):
                raise wrong
            return int(value)   # JSON numbers are floats in Go; Ollama truncates
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise wrong
        return float(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind is str:
        if not isinstance(value, str):
            raise wrong
        return value
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise wrong
    return list(value)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array" if all(isinstance(v, str) for v in value) else "an array with non-string items"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def coerce_options(options: Mapping[str, Any] | None, *, strict: bool) -> tuple[dict[str, Any], list[str]]:
    """Check and type an ``options`` object from an API request (JSON values).

    Args:
        options: the request's options; None or {} gives ({}, []).
        strict: True where an unknown name is an error (creating a model, as in a Modelfile);
            False for generate/chat/embed requests, where Ollama logs and drops it.

    Returns:
        (typed options, warnings): null values are dropped as Ollama does; each warning is one
        human-readable line about an ignored name.

    Raises:
        OptionError: a value of the wrong type, or (strict) an unknown name.
    """
    typed: dict[str, Any] = {}
    warnings: list[str] = []
    if not options:
        return typed, warnings
    if not isinstance(options, Mapping):
        raise OptionError("options", "options must be an object")
    for name, value in options.items():
        if name in DEPRECATED_OPTIONS:
            warnings.append(f'option "{name}" is deprecated and ignored')
            continue
        if name not in OPTION_TYPES:
            if strict:
                raise _unknown(name, "option")
            warnings.append(f'invalid option provided: "{name}" (ignored)')
            continue
        if value is None:
            continue
        typed[name] = _coerce_json(name, value)
    return typed, warnings


def merge_params(parent: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a model's parameters over its parent's, as ``ollama create`` does.

    Each name the child sets wins outright; a child's ``stop`` list replaces the parent's
    rather than extending it. Neither input is modified.
    """
    merged = copy.deepcopy(dict(parent))
    merged.update(copy.deepcopy(dict(child)))
    return merged


def resolve_options(*layers: Mapping[str, Any] | None, context_length: int | None = None) -> dict[str, Any]:
    """Ollama's defaults overlaid by each layer in turn (model params, then request options)."""
    opts = default_options(context_length=context_length)
    for layer in layers:
        if layer:
            opts.update(copy.deepcopy(dict(layer)))
    return opts


def format_value(value: Any) -> str:
    """Write a parameter value the way ``ollama show`` does (Go's ``%v``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _go_float(value: float) -> str:
    # Go's %v for a float64 is strconv's shortest 'g': the fewest digits that round-trip
    # (the same digits Python's repr picks), in exponent form when the exponent is < -4 or >= 6.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    dec = Decimal(repr(abs(value))).normalize()
    _, digit_tuple, exponent = dec.as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + int(exponent)   # value = 0.<digits> * 10**point
    exp = point - 1
    if exp < -4 or exp >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"



#: Bounds on load options, checked before they reach llama.cpp, where a bad value aborts the
#: process (``num_thread: 100000`` ran the thread pool out of resources).
def _max_threads() -> int:
    import os

    return max(64, 4 * (os.cpu_count() or 1))


def check_runner_options(options: Mapping[str, Any]) -> None:
    """OptionError (HTTP 400) naming the first load option out of range."""
    def get(name: str) -> int | None:
        value = options.get(name)
        return None if value is None else int(value)

    checks = (
        ("num_thread", 0, _max_threads()),
        ("num_ctx", 0, 1 << 24),
        ("num_batch", 0, 1 << 20),
        ("num_gpu", -1, 1 << 16),
        ("main_gpu", 0, 63),
    )
    for name, low, high in checks:
        value = get(name)
        if value is not None and not low <= value <= high:
            raise OptionError(name, f"invalid option {name}={value}: must be between {low} and "
                                    f"{high}")
