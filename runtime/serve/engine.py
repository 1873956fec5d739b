"""What the server and its runners agree on about a model's engine. No llama.cpp, no HTTP.

llama.cpp itself runs only in runner processes (:mod:`runtime.serve.runner`). This module holds
what both sides need: :class:`LoadOptions` (what it takes to load a model: two requests share
a runner only when these match), :class:`SamplingOptions` (Ollama's per-request settings),
:class:`Chunk` (a piece of generated text; the last one carries the counters, durations in
nanoseconds like Ollama's ``prompt_eval_duration``/``eval_duration``), :class:`StopMatcher`
(stop strings found across token boundaries), and the memory check made before a load.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import EngineError
from runtime.options import DEFAULT_OPTIONS, SAMPLER_DEFAULTS

logger = logging.getLogger(__name__)

#: Every default below comes from the one table in :mod:`runtime.options` (Ollama's defaults
#: and the retired sampler knobs); tests/unit/test_options.py checks the dataclasses against it.
_DEFAULTS: dict[str, Any] = {**DEFAULT_OPTIONS, **SAMPLER_DEFAULTS}

DoneReason = str  # "stop" | "length" | "cancel"


def _opt(options: Mapping[str, Any], key: str) -> Any:
    value = options.get(key)
    return _DEFAULTS[key] if value is None else value


@dataclass(frozen=True)
class LoadOptions:
    """What it takes to open a context; two requests share an engine only when these match."""

    model_path: Path
    n_ctx: int = _DEFAULTS["num_ctx"]
    n_batch: int = _DEFAULTS["num_batch"]
    n_gpu_layers: int = _DEFAULTS["num_gpu"]
    main_gpu: int = _DEFAULTS["main_gpu"]
    n_threads: int | None = _DEFAULTS["num_thread"] or None     # 0: llama.cpp decides
    use_mmap: bool = _DEFAULTS["use_mmap"] is not False         # None: mmap, as llama.cpp does
    embedding: bool = False
    lora_path: Path | None = None
    projector_path: Path | None = None      # a vision model's mmproj
    flash_attn: bool = False
    image_encode: str = "auto"              # Settings.image_encode

    @classmethod
    def from_options(cls, *, model_path: Path, options: Mapping[str, Any], embedding: bool = False,
                     lora_path: Path | None = None, projector_path: Path | None = None,
                     default_ctx: int = _DEFAULTS["num_ctx"], flash_attn: bool = False,
                     image_encode: str = "auto") -> LoadOptions:
        """Build from merged Ollama options (``num_ctx``, ``num_batch``, ``num_gpu``, ...)."""
        num_ctx = options.get("num_ctx") or default_ctx
        num_thread = int(_opt(options, "num_thread"))
        use_mmap = options.get("use_mmap")
        return cls(
            model_path=Path(model_path),
            n_ctx=max(16, int(num_ctx)),
            n_batch=max(1, int(_opt(options, "num_batch"))),
            n_gpu_layers=int(_opt(options, "num_gpu")),
            main_gpu=int(_opt(options, "main_gpu")),
            n_threads=num_thread if num_thread > 0 else None,
            use_mmap=True if use_mmap is None else bool(use_mmap),
            embedding=embedding,
            lora_path=Path(lora_path) if lora_path else None,
            projector_path=(Path(projector_path) if projector_path and not embedding else None),
            flash_attn=flash_attn,
            image_encode=image_encode if projector_path and not embedding else "auto",
        )


@dataclass(frozen=True)
class SamplingOptions:
    """Per-request generation settings, Ollama's names and defaults."""

    num_predict: int = _DEFAULTS["num_predict"]
    num_keep: int = _DEFAULTS["num_keep"]
    temperature: float = _DEFAULTS["temperature"]
    top_k: int = _DEFAULTS["top_k"]
    top_p: float = _DEFAULTS["top_p"]
    min_p: float = _DEFAULTS["min_p"]
    typical_p: float = _DEFAULTS["typical_p"]
    repeat_penalty: float = _DEFAULTS["repeat_penalty"]
    repeat_last_n: int = _DEFAULTS["repeat_last_n"]
    presence_penalty: float = _DEFAULTS["presence_penalty"]
    frequency_penalty: float = _DEFAULTS["frequency_penalty"]
    seed: int = _DEFAULTS["seed"]
    stop: tuple[str, ...] = tuple(_DEFAULTS["stop"])
    mirostat: int = _DEFAULTS["mirostat"]
    mirostat_tau: float = _DEFAULTS["mirostat_tau"]
    mirostat_eta: float = _DEFAULTS["mirostat_eta"]

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SamplingOptions:
        """From merged Ollama options; what is unset takes Ollama's default."""
        stop = options.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name != "stop":
                kind: Any = type(f.default)          # int, float or bool: the table's type
                values[f.name] = kind(_opt(options, f.name))
        return cls(stop=tuple(str(s) for s in stop if str(s)), **values)


@dataclass
class Chunk:
    """A piece of generated text; the last one has ``done`` and the counters."""

    text: str
    done: bool = False
    done_reason: DoneReason | None = None
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0     # ns
    eval_count: int = 0
    eval_duration: int = 0            # ns
    context: list[int] = field(default_factory=list)
    #: per token when asked: {"token", "logprob", "bytes", "top_logprobs"?} (Ollama's Logprob)
    logprobs: list[dict[str, Any]] | None = None


class StopMatcher:
    """Finds stop strings across chunk boundaries, holding back what might begin one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Add text; return (text safe to emit, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        self.pending += text
        hits = [(self.pending.find(s), s) for s in self.stops]
        found = [h for h in hits if h[0] >= 0]
        if found:
            idx = min(i for i, _ in found)
            out = self.pending[:idx]
            self.pending = ""
            return out, True
        hold = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


MEMINFO = Path("/proc/meminfo")
#: compute buffers and the like, on top of weights and KV cache
_OVERHEAD = 256 << 20


def available_memory(meminfo: Path = MEMINFO) -> int | None:
    """MemAvailable in bytes (Linux), or None when unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@functools.lru_cache(maxsize=64)
def _header_dims(path: Path) -> tuple[int, int, int, int]:
    """(n_layer, n_embd, n_head, n_head_kv) from the GGUF header; zeros when unreadable."""
    from runtime.models.gguf_info import read_gguf_info

    try:
        kv = read_gguf_info(path).kv
    except Exception:  # noqa: BLE001 - llama.cpp will report a bad file properly
        return 0, 0, 0, 0
    arch = kv.get("general.architecture", "")

    def num(key: str) -> int:
        v = kv.get(f"{arch}.{key}")
        if isinstance(v, list):
            v = max((x for x in v if isinstance(x, (int, float))), default=0)
        return int(v) if isinstance(v, (int, float)) else 0

    n_head = num("attention.head_count")
    return (num("block_count"), num("embedding_length"), n_head,
            num("attention.head_count_kv") or n_head)


def memory_needed(options: LoadOptions, *, n_seq: int = 1) -> int:
    """Bytes a CPU load needs: the weights once, a full f16 KV cache for each of the ``n_seq``
    parallel sequences, and some overhead."""
    n_layer, n_embd, n_head, n_head_kv = _header_dims(options.model_path)
    kv = 0
    if n_head:
        kv = n_seq * options.n_ctx * n_layer * 2 * (n_embd * n_head_kv // n_head) * 2
    return file_size(options.model_path) + kv + _OVERHEAD


def check_memory(options: LoadOptions, *, n_seq: int = 1, available: int | None = None) -> None:
    """EngineError when the model cannot fit in available memory (Ollama's check)."""
    free = available_memory() if available is None else available
    needed = memory_needed(options, n_seq=n_seq)
    if free is not None and needed > free:
        raise EngineError(
            f"model requires more system memory ({needed / (1 << 30):.1f} GiB) than is "
            f"available ({free / (1 << 30):.1f} GiB)",
            hint="use a smaller model or num_ctx, or unload other models (OLLAMA_MAX_LOADED_MODELS)")


def normalize(vec: list[float]) -> list[float]:
    """L2-normalise like Ollama; NaN/Inf is an error."""
    total = 0.0
    for v in vec:
        if math.isnan(v) or math.isinf(v):
            raise EngineError("embedding contains NaN or Inf values")
        total += v * v
    norm = 1.0 / max(math.sqrt(total), 1e-12)
    return [v * norm for v in vec]


def file_size(path: Path) -> int:
    """Bytes of a model file; for the first shard of a split GGUF, of all its shards."""
    import re

    try:
        m = re.match(r"^(.+)-00001-of-(\d{5})\.gguf$", path.name)
        if not m:
            return os.path.getsize(path)
        count = int(m.group(2))
        return sum(os.path.getsize(path.with_name(f"{m.group(1)}-{i:05d}-of-{count:05d}.gguf"))
                   for i in range(1, count + 1))
    except OSError:
        return 0


_l2 = normalize
