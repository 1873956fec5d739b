"""JSON bytes the way Go's ``encoding/json`` writes them, so stored blobs match Ollama's.

Go sorts map keys, writes compact separators, escapes ``<``, ``>``, ``&``, U+2028 and U+2029,
prints whole floats without a fraction, and ``json.Encoder.Encode`` adds a trailing newline.
"""
from __future__ import annotations

import json
import math
from typing import Any

_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _normalise(v: Any) -> Any:
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v) and abs(v) < 1e21:
            return int(v)
        return v
    if isinstance(v, dict):
        return {str(k): _normalise(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_normalise(x) for x in v]
    return v


def go_json(value: Any, *, sort_keys: bool = True, newline: bool = False) -> bytes:
    """Encode like Go: ``json.Marshal`` (``newline=False``) or ``Encoder.Encode`` (``True``)."""
    text = json.dumps(_normalise(value), ensure_ascii=False, separators=(",", ":"),
                      sort_keys=sort_keys, allow_nan=False)
    for ch, esc in _ESCAPES.items():
        if ch in text:
            text = text.replace(ch, esc)
    return (text + ("\n" if newline else "")).encode("utf-8")
