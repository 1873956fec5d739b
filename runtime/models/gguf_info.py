"""Facts from a GGUF file's header (no weights are loaded), cached per blob.

Used by ``create`` (config blob: family, parameter size, quantization), ``show``
(``model_info``), the server's header facts (chat template, special tokens) and the memory
check. The header is read by :mod:`.gguf_header`, which skips long arrays (the vocabulary and
merges) unless ``verbose`` is asked; the result is cached by the blob's digest (a store blob's
file name, ``sha256-<hex>``) or, for other files, by path, size, mtime and inode, so every
caller shares one read per blob (issue 11: ``/api/show`` parsed the 49k-token vocabulary again
on every call, 8-12 s).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import GGUFError
from runtime.models.gguf_header import HeaderError, SkippedArray, TensorInfo, read_header

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"

#: general.file_type -> Ollama's quantization names (llama.cpp's LLAMA_FTYPE_* numbering)
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}

#: array keys whose (large) contents `show` hides unless verbose, as Ollama does
BULKY_KEYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
              "tokenizer.ggml.scores")
#: arrays longer than this are not decoded by a plain (not verbose) read
MAX_ARRAY = 1024
#: Ollama's show: arrays with more items than this answer ``[]`` unless verbose
SHOW_ARRAY_ITEMS = 5
#: headers kept in the cache (a few KB each once the long arrays are skipped)
CACHE_SIZE = 128


def human_number(n: int) -> str:
    """Ollama's format.HumanNumber: 8.0B -> "8B", 494_032_768 -> "494.03M"."""
    if n >= 1_000_000_000:
        v = n / 1_000_000_000
        return f"{v:.0f}B" if v == math.floor(v) else f"{v:.1f}B"
    if n >= 1_000_000:
        v = n / 1_000_000
        return f"{v:.0f}M" if v == math.floor(v) else f"{v:.2f}M"
    if n >= 1_000:
        return f"{n / 1_000:.0f}K"
    return str(n)


@dataclass
class GGUFInfo:
    path: Path
    architecture: str
    file_type: str
    parameter_count: int
    kv: dict[str, Any] = field(repr=False)
    tensor_count: int = 0
    #: ``bos``/``eos``/``eot``/… -> token text, known even when the vocabulary was skipped
    special_tokens: dict[str, str] = field(default_factory=dict, repr=False)
    #: whether every array was decoded (``read_gguf_info(..., verbose=True)``)
    verbose: bool = False

    @property
    def parameter_size(self) -> str:
        return human_number(self.parameter_count)

    @property
    def context_length(self) -> int | None:
        v = self.kv.get(f"{self.architecture}.context_length")
        return int(v) if isinstance(v, (int, float)) else None

    @property
    def chat_template(self) -> str | None:
        v = self.kv.get("tokenizer.chat_template")
        return v if isinstance(v, str) else None

    def token(self, key: str) -> str | None:
        """The text of a special token by key suffix, e.g. ``token("eos")``."""
        if key in self.special_tokens:
            return self.special_tokens[key]
        idx = self.kv.get(f"tokenizer.ggml.{key}_token_id")
        tokens = self.kv.get("tokenizer.ggml.tokens")
        if isinstance(idx, int) and isinstance(tokens, list) and 0 <= idx < len(tokens):
            return str(tokens[idx])
        return None

    def model_info(self, *, verbose: bool = False) -> dict[str, Any]:
        """The ``model_info`` map of ``/api/show``: every KV but the chat template; unless
        verbose, arrays of more than five items are ``[]`` (Ollama's getModelData)."""
        out: dict[str, Any] = {}
        for k, v in sorted(self.kv.items()):
            if k.startswith("GGUF.") or k == "tokenizer.chat_template":
                continue
            if isinstance(v, list) and (not verbose or isinstance(v, SkippedArray)) and (
                    isinstance(v, SkippedArray) or len(v) > SHOW_ARRAY_ITEMS):
                out[k] = []
                continue
            out[k] = v
        out.setdefault("general.parameter_count", self.parameter_count)
        return out


def check_magic(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise GGUFError(str(path), "file does not exist") from None
    except IsADirectoryError:
        raise GGUFError(str(path), "is a directory (safetensors folders are not supported; "
                                   "convert to GGUF first)") from None
    except OSError as e:
        raise GGUFError(str(path), e.strerror or str(e)) from e
    if len(head) < 8:
        raise GGUFError(str(path), "file is too short to be GGUF")
    if head[:4] != GGUF_MAGIC:
        raise GGUFError(str(path), f"bad magic {head[:4]!r} (expected b'GGUF')")


_BLOB_NAME = re.compile(r"^sha256[-:]([0-9a-f]{64})$")
_cache: OrderedDict[tuple[Any, ...], GGUFInfo] = OrderedDict()
_cache_lock = threading.Lock()


def cache_key(path: Path, *, verbose: bool = False) -> tuple[Any, ...]:
    """A blob's digest (blobs never change under their name), else the file's identity."""
    real = path.resolve()
    m = _BLOB_NAME.match(real.name)
    st = os.stat(real)
    if m:
        return ("sha256:" + m.group(1), st.st_size, verbose)
    return (str(real), st.st_size, st.st_mtime_ns, st.st_ino, verbose)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def read_gguf_info(path: str | Path, *, verbose: bool = False) -> GGUFInfo:
    """The header facts of ``path``; GGUFError for anything that is not a complete GGUF.

    Cached (see the module docstring); each call returns its own copy, safe to change.

    Args:
        path: a GGUF file (a store blob, a split shard, any file).
        verbose: decode every array (the vocabulary too), for ``show --verbose``.
    """
    p = Path(path)
    check_magic(p)
    try:
        key = cache_key(p, verbose=verbose)
    except OSError as e:
        raise GGUFError(str(p), e.strerror or str(e)) from e
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
    if hit is None:
        hit = _read(p, verbose=verbose)
        if not verbose:    # a verbose read holds the whole vocabulary: not kept
            with _cache_lock:
                _cache[key] = hit
                while len(_cache) > CACHE_SIZE:
                    _cache.popitem(last=False)
    return dataclasses.replace(hit, kv=dict(hit.kv), special_tokens=dict(hit.special_tokens))


def _read(p: Path, *, verbose: bool) -> GGUFInfo:
    try:
        head = read_header(str(p), max_array=None if verbose else MAX_ARRAY)
    except HeaderError as e:
        raise GGUFError(str(p), f"cannot parse header ({e})") from None
    except OSError as e:
        raise GGUFError(str(p), e.strerror or str(e)) from e
    kv = dict(head.kv)
    kv["GGUF.version"] = head.version
    kv["GGUF.tensor_count"] = len(head.tensors)
    kv["GGUF.kv_count"] = len(head.kv)
    size = p.stat().st_size
    params = 0
    for t in head.tensors:
        params += t.n_elements
        n_bytes = t.n_bytes
        if n_bytes is not None and t.offset + n_bytes > size:
            raise GGUFError(str(p), f"truncated: tensor {t.name} ends at byte "
                                    f"{t.offset + n_bytes}, file has {size}")
    if isinstance(kv.get("general.parameter_count"), int):
        params = kv["general.parameter_count"]
    arch = kv.get("general.architecture")
    if not isinstance(arch, str):
        if isinstance(kv.get("split.no"), int) and kv["split.no"] > 0:
            arch = ""  # a later shard of a split GGUF: the first shard carries the metadata
        else:
            raise GGUFError(str(p), "general.architecture is missing")
    ft = kv.get("general.file_type")
    file_type = FILE_TYPES.get(ft, "unknown") if isinstance(ft, int) else _guess_file_type(
        head.tensors)
    return GGUFInfo(path=p, architecture=arch, file_type=file_type, parameter_count=params,
                    kv=kv, tensor_count=len(head.tensors), special_tokens=head.special_tokens,
                    verbose=verbose)


def _guess_file_type(tensors: list[TensorInfo]) -> str:
    counts: dict[str, int] = {}
    for t in tensors:
        counts[t.type_name] = counts.get(t.type_name, 0) + t.n_elements
    return max(counts, key=lambda k: counts[k]) if counts else "unknown"
