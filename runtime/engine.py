"""One loaded llama.cpp context: tokenize, generate token by token, embed. No HTTP here.

An :class:`Engine` wraps one ``llama_cpp.Llama`` (one context). The scheduler opens
``OLLAMA_NUM_PARALLEL`` engines per model; with ``use_mmap`` they share the weights through
the page cache of the one mapped GGUF file, and each has its own KV cache.

Generation yields :class:`Chunk` objects as tokens arrive: text is decoded incrementally
(UTF-8 sequences split across tokens are held back), stop strings are matched across token
boundaries (text that may start a stop string is held back until it is known not to), and
a ``threading.Event`` cancels between two tokens. Durations are measured in nanoseconds,
like Ollama's ``prompt_eval_duration``/``eval_duration``.
"""
from __future__ import annotations

import codecs
import ctypes
import dataclasses
import functools
import logging
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .errors import EngineError

logger = logging.getLogger(__name__)

#: Ollama's api.DefaultOptions() for the options the engine reads (docs/api.md, api/types.go).
ENGINE_DEFAULTS: dict[str, Any] = {
    "num_ctx": 4096, "num_batch": 512, "num_gpu": -1, "num_thread": 0, "use_mmap": None,
    "num_keep": 4, "num_predict": -1, "temperature": 0.8, "top_k": 40, "top_p": 0.9,
    "min_p": 0.0, "typical_p": 1.0, "repeat_last_n": 64, "repeat_penalty": 1.1,
    "presence_penalty": 0.0, "frequency_penalty": 0.0, "seed": -1, "stop": [],
    "mirostat": 0, "mirostat_tau": 5.0, "mirostat_eta": 0.1,
}

DoneReason = str  # "stop" | "length" | "cancel"


def _opt(options: Mapping[str, Any], key: str) -> Any:
    value = options.get(key)
    return ENGINE_DEFAULTS[key] if value is None else value


@dataclass(frozen=True)
class LoadOptions:
    """What it takes to open a context; two requests share an engine only when these match."""

    model_path: Path
    n_ctx: int = 4096
    n_batch: int = 512
    n_gpu_layers: int = -1
    main_gpu: int = 0
    n_threads: int | None = None
    use_mmap: bool = True
    embedding: bool = False
    lora_path: Path | None = None

    @classmethod
    def from_options(cls, *, model_path: Path, options: Mapping[str, Any], embedding: bool = False,
                     lora_path: Path | None = None, default_ctx: int = 4096) -> LoadOptions:
        """Build from merged Ollama options (``num_ctx``, ``num_batch``, ``num_gpu``, ...)."""
        num_ctx = options.get("num_ctx") or default_ctx
        num_thread = int(_opt(options, "num_thread"))
        use_mmap = options.get("use_mmap")
        return cls(
            model_path=Path(model_path),
            n_ctx=max(16, int(num_ctx)),
            n_batch=max(1, int(_opt(options, "num_batch"))),
            n_gpu_layers=int(_opt(options, "num_gpu")),
            main_gpu=int(options.get("main_gpu") or 0),
            n_threads=num_thread if num_thread > 0 else None,
            use_mmap=True if use_mmap is None else bool(use_mmap),
            embedding=embedding,
            lora_path=Path(lora_path) if lora_path else None,
        )


@dataclass(frozen=True)
class SamplingOptions:
    """Per-request generation settings, Ollama's names and defaults."""

    num_predict: int = -1
    num_keep: int = 4
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1
    stop: tuple[str, ...] = ()
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SamplingOptions:
        stop = options.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        return cls(
            num_predict=int(_opt(options, "num_predict")),
            num_keep=int(_opt(options, "num_keep")),
            temperature=float(_opt(options, "temperature")),
            top_k=int(_opt(options, "top_k")),
            top_p=float(_opt(options, "top_p")),
            min_p=float(_opt(options, "min_p")),
            typical_p=float(_opt(options, "typical_p")),
            repeat_penalty=float(_opt(options, "repeat_penalty")),
            repeat_last_n=int(_opt(options, "repeat_last_n")),
            presence_penalty=float(_opt(options, "presence_penalty")),
            frequency_penalty=float(_opt(options, "frequency_penalty")),
            seed=int(_opt(options, "seed")),
            stop=tuple(str(s) for s in stop if str(s)),
            mirostat=int(_opt(options, "mirostat")),
            mirostat_tau=float(_opt(options, "mirostat_tau")),
            mirostat_eta=float(_opt(options, "mirostat_eta")),
        )


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


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError as e:  # pragma: no cover - depends on the install
        raise EngineError(f"llama-cpp-python is not installed: {e}",
                          hint="reinstall llmcrate with its runtime libraries") from e
    return llama_cpp


def supports_gpu_offload() -> bool:
    llama_cpp = _import_llama()
    try:
        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # noqa: BLE001 - older builds lack the probe
        return False


class Engine:
    """One llama.cpp context over a GGUF file. Not thread-safe: one request at a time."""

    def __init__(self, llm: Any, options: LoadOptions, load_duration: float) -> None:
        self._llm = llm
        self.options = options
        self.load_duration = load_duration
        self._lock = threading.Lock()
        self._closed = False
        llama_cpp = _import_llama()
        self._vocab = llm._model.vocab
        self._is_eog = llama_cpp.llama_vocab_is_eog
        self.state_size = _kv_bytes(llama_cpp, llm)

    @classmethod
    def load(cls, options: LoadOptions) -> Engine:
        """Open the model; any failure becomes an :class:`EngineError` naming the file.

        A model that cannot fit in free memory is refused up front (as Ollama does) rather
        than left to thrash; a GPU load that fails is retried on the CPU.
        """
        llama_cpp = _import_llama()
        path = options.model_path
        if not path.is_file():
            raise EngineError(f"model file {path} does not exist")
        gpu = options.n_gpu_layers != 0 and supports_gpu_offload()
        if not gpu:
            check_memory(options)
        # an embedding reads each input in one batch, so inputs up to num_ctx fit untruncated
        batch = options.n_ctx if options.embedding else min(options.n_batch, options.n_ctx)
        kwargs: dict[str, Any] = dict(
            model_path=str(path), n_ctx=options.n_ctx, n_batch=batch,
            n_ubatch=batch, n_gpu_layers=options.n_gpu_layers,
            main_gpu=options.main_gpu,
            use_mmap=options.use_mmap, embedding=options.embedding, verbose=False,
        )
        if options.n_threads:
            kwargs["n_threads"] = options.n_threads
            kwargs["n_threads_batch"] = options.n_threads
        if options.lora_path is not None:
            kwargs["lora_path"] = str(options.lora_path)
        start = time.perf_counter()
        try:
            llm = llama_cpp.Llama(**kwargs)
        except Exception as e:  # llama-cpp-python raises ValueError/RuntimeError/OSError
            if not gpu:
                raise EngineError(f"unable to load model {path.name}: {e}",
                                  hint="the file may be corrupt or need more memory than is free"
                                  ) from e
            logger.warning("loading %s on the GPU failed (%s); retrying on the CPU", path.name, e)
            return cls.load(dataclasses.replace(options, n_gpu_layers=0))
        engine = cls(llm, options, time.perf_counter() - start)
        logger.info("loaded %s (ctx %d, embedding=%s) in %.3fs", path.name, options.n_ctx,
                    options.embedding, engine.load_duration)
        return engine

    # -- facts -------------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        # llama.cpp pads the context (to 256s); llama-cpp-python's buffers hold what was asked
        return min(int(self._llm.n_ctx()), self.options.n_ctx)

    @property
    def memory_size(self) -> int:
        """Bytes this context adds on top of the mapped weights (KV cache and buffers)."""
        return self.state_size

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, text: str, *, special: bool = True, add_bos: bool = True) -> list[int]:
        tokens = list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))
        # A Jinja chat template writes bos_token itself; llama.cpp then adds another one for
        # models whose add_bos_token is set. One BOS, as the template intended.
        bos = self._llm.token_bos()
        if add_bos and len(tokens) >= 2 and tokens[0] == tokens[1] == bos >= 0:
            del tokens[0]
        return tokens

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(self._llm.detokenize(list(tokens))).decode("utf-8", errors="replace")

    def _piece(self, token: int) -> bytes:
        """The bytes of one token (llama-cpp-python's helper caps pieces at 32 bytes)."""
        llama_cpp = _import_llama()
        size = 64
        while True:
            buf = (ctypes.c_char * size)()
            n = llama_cpp.llama_token_to_piece(self._vocab, llama_cpp.llama_token(token), buf,
                                               size, 0, False)
            if n >= 0:
                return bytes(buf[:n])
            size = -n

    # -- generation --------------------------------------------------------------------------
    def _fit_prompt(self, tokens: list[int], opts: SamplingOptions) -> list[int]:
        """A prompt that does not fit the context keeps its first num_keep tokens and drops
        the oldest after them (Ollama's runner), leaving room to generate."""
        n_ctx = self.n_ctx
        if len(tokens) < n_ctx:
            return tokens
        room = n_ctx // 4 if opts.num_predict < 0 else min(max(opts.num_predict, 1), n_ctx // 2)
        limit = max(1, n_ctx - max(room, 1))
        keep = max(0, min(opts.num_keep, limit - 1))
        logger.warning("prompt of %d tokens truncated to %d (num_ctx %d)", len(tokens), limit, n_ctx)
        return tokens[:keep] + tokens[len(tokens) - (limit - keep):]

    def _shift_context(self, seq: list[int], num_keep: int) -> list[int]:
        """Make room in a full context (Ollama's shift): keep the first ``num_keep`` tokens,
        drop half of the rest, move the KV cache of the remainder down.

        ``seq`` is what the context holds plus the last sampled token, not yet decoded.
        Returns the shortened sequence, for ``Llama.generate`` to continue from.
        """
        llm = self._llm
        n_past = int(llm.n_tokens)
        keep = max(0, min(num_keep, n_past - 2))
        discard = max(1, (n_past - keep) // 2)
        llm._ctx.kv_cache_seq_rm(0, keep, keep + discard)       # one sequence: id 0
        llm._ctx.kv_cache_seq_shift(0, keep + discard, n_past, -discard)
        shifted = seq[:keep] + seq[keep + discard:]
        llm.input_ids[: n_past - discard] = shifted[: n_past - discard]
        llm.n_tokens = n_past - discard
        logger.debug("context shift: kept %d, discarded %d of %d", keep, discard, n_past)
        return shifted

    def generate(self, prompt: str | Sequence[int], options: SamplingOptions, *,
                 grammar: str | None = None, cancel: threading.Event | None = None
                 ) -> Iterator[Chunk]:
        """Stream the completion of ``prompt`` (text or token ids).

        Args:
            prompt: rendered prompt text (special tokens parsed) or token ids.
            options: sampling settings.
            grammar: a GBNF grammar constraining the output (``format``).
            cancel: set from another thread to stop before the next token.
        """
        if not self._lock.acquire(blocking=False):
            raise EngineError("engine is busy")  # the scheduler never lets this happen
        try:
            yield from self._generate(prompt, options, grammar, cancel or threading.Event())
        finally:
            self._lock.release()

    def _generate(self, prompt: str | Sequence[int], opts: SamplingOptions, grammar: str | None,
                  cancel: threading.Event) -> Iterator[Chunk]:
        llama_cpp = _import_llama()
        llm = self._llm
        t_start = time.perf_counter_ns()
        tokens = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if not tokens:
            bos = llm.token_bos()
            tokens = [bos if bos >= 0 else llm.token_eos()]
        tokens = self._fit_prompt(tokens, opts)
        compiled = None
        if grammar:
            try:
                compiled = llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)
            except Exception as e:  # noqa: BLE001 - bad grammar is the caller's input
                raise EngineError(f"invalid format grammar: {e}") from e
        seed = opts.seed if opts.seed >= 0 else random.randrange(0, 2**31 - 1)
        llm.set_seed(seed)
        llm.last_n_tokens_size = opts.repeat_last_n if opts.repeat_last_n >= 0 else self.n_ctx
        n_ctx = self.n_ctx
        if opts.num_predict > 0:
            budget = opts.num_predict
        elif opts.num_predict == -2:  # fill the context
            budget = n_ctx - len(tokens)
        else:  # -1: until the model stops; capped like Ollama against runaway output
            budget = 10 * n_ctx
        # without a grammar a full context is shifted (Ollama's context shift); a grammar's
        # state would not survive the sampler being rebuilt, so there a full context ends it
        shift = compiled is None and opts.num_predict != -2
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(opts.stop)
        generated: list[int] = []
        in_ctx = len(tokens)      # tokens the context holds, counting the one not yet decoded
        t_first = 0
        reason: DoneReason = "length"

        def start(seq: list[int]) -> Iterator[int]:
            return llm.generate(
                seq, top_k=opts.top_k, top_p=opts.top_p, min_p=opts.min_p,
                typical_p=opts.typical_p, temp=opts.temperature,
                repeat_penalty=opts.repeat_penalty, frequency_penalty=opts.frequency_penalty,
                presence_penalty=opts.presence_penalty, mirostat_mode=opts.mirostat,
                mirostat_tau=opts.mirostat_tau, mirostat_eta=opts.mirostat_eta, grammar=compiled)

        gen = start(tokens)
        try:
            while True:
                if cancel.is_set():
                    reason = "cancel"
                    break
                if budget <= 0:
                    reason = "length"
                    break
                if in_ctx >= n_ctx:
                    if not shift or not generated:
                        reason = "length"
                        break
                    gen.close()
                    seq = self._shift_context((tokens + generated)[-in_ctx:], opts.num_keep)
                    in_ctx = len(seq)
                    gen = start(seq)
                try:
                    token = next(gen)
                except StopIteration:
                    reason = "stop"
                    break
                except Exception as e:  # llama_decode failures and the like
                    raise EngineError(f"generation failed: {e}") from e
                if not t_first:
                    t_first = time.perf_counter_ns()
                if self._is_eog(self._vocab, token):
                    reason = "stop"
                    break
                generated.append(token)
                in_ctx += 1
                budget -= 1
                piece = decoder.decode(self._piece(token))
                text, hit = stops.feed(piece)
                if hit:
                    if text:
                        yield Chunk(text)
                    reason = "stop"
                    break
                if text:
                    yield Chunk(text)
        finally:
            gen.close()
        # after a stop-string hit nothing is pending; otherwise release what was held back
        tail = stops.flush() + decoder.decode(b"", final=True)
        t_end = time.perf_counter_ns()
        t_first = t_first or t_end
        yield Chunk(
            tail, done=True, done_reason=reason,
            prompt_eval_count=len(tokens), prompt_eval_duration=max(1, t_first - t_start),
            eval_count=len(generated), eval_duration=max(1, t_end - t_first) if generated else 0,
            context=tokens + generated,
        )

    # -- embeddings --------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], *, truncate: bool = True, normalize: bool = True
              ) -> tuple[list[list[float]], int]:
        """Return one vector per text (L2-normalised unless told not to) and the tokens read."""
        if not self.options.embedding:
            raise EngineError("model was not loaded for embeddings")
        with self._lock:
            limit = min(self.n_ctx, int(self._llm.n_batch))
            vectors: list[list[float]] = []
            total = 0
            for text in texts:
                n = len(self.tokenize(text))
                if n > limit and not truncate:
                    raise EngineError("input length exceeds maximum context length")
                try:
                    out, count = self._llm.embed(text, truncate=True, return_count=True)
                except Exception as e:  # noqa: BLE001
                    raise EngineError(f"embedding failed: {e}") from e
                total += int(count)
                if out and isinstance(out[0], list):   # no pooling in the model: mean-pool tokens
                    dim = len(out[0])
                    out = [sum(row[i] for row in out) / len(out) for i in range(dim)]
                vec = [float(v) for v in out]
                vectors.append(_l2(vec) if normalize else vec)
            return vectors, total

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._llm.close()
        except Exception:  # noqa: BLE001 - best effort on shutdown
            logger.debug("closing engine failed", exc_info=True)


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
    from .gguf_info import read_gguf_info

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


def memory_needed(options: LoadOptions) -> int:
    """Bytes a CPU load needs: weights, a full f16 KV cache, and some overhead."""
    n_layer, n_embd, n_head, n_head_kv = _header_dims(options.model_path)
    kv = 0
    if n_head:
        kv = options.n_ctx * n_layer * 2 * (n_embd * n_head_kv // n_head) * 2
    return file_size(options.model_path) + kv + _OVERHEAD


def check_memory(options: LoadOptions, *, available: int | None = None) -> None:
    """EngineError when the model cannot fit in available memory (Ollama's check)."""
    free = available_memory() if available is None else available
    needed = memory_needed(options)
    if free is not None and needed > free:
        raise EngineError(
            f"model requires more system memory ({needed / (1 << 30):.1f} GiB) than is "
            f"available ({free / (1 << 30):.1f} GiB)",
            hint="use a smaller model or num_ctx, or unload other models (OLLAMA_MAX_LOADED_MODELS)")


def _kv_bytes(llama_cpp: Any, llm: Any) -> int:
    """Size of a full f16 KV cache for this context (what /api/ps adds to the weights)."""
    try:
        model = llm._model.model
        n_layer = llama_cpp.llama_model_n_layer(model)
        n_embd = llama_cpp.llama_model_n_embd(model)
        n_head = max(1, llama_cpp.llama_model_n_head(model))
        n_head_kv = llama_cpp.llama_model_n_head_kv(model)
        return int(llm.n_ctx()) * n_layer * 2 * (n_embd * n_head_kv // n_head) * 2
    except Exception:  # noqa: BLE001 - informational only
        return 0


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
