"""The runner process: loads one model and serves the framed protocol (``python -m runtime.serve.runner``).

Threads: the main thread runs the :class:`~runtime.serve.runner.batching.BatchLoop` (all decoding);
a reader thread takes messages and answers tokenize itself; a small pool tokenizes
prompts and builds sampler chains, so a huge prompt never stalls the other sequences. When the
server goes away (the socket closes) the process exits at once.

This is the only place llama.cpp runs: a crash here (abort, segfault, OOM kill) ends this
process and the server reports it, while the server and other models keep serving.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runtime.errors import EngineError
from runtime.serve.engine import LoadOptions, SamplingOptions, normalize
from runtime.serve.runner.batching import BatchLoop, Request, fit_prompt
from runtime.serve.runner.protocol import Channel
from runtime.serve.runner.sampling import Sampler

logger = logging.getLogger("runtime.serve.runner")

#: how errors name the model: the name the server gave (``"tiny:latest"``), never a blob path
_model_name = "the model"


def import_llama() -> Any:
    """``llama_cpp``, with the ggml backends of the runtime ``start.sh`` chose registered first."""
    lib_dir = os.environ.get("LLAMA_CPP_LIB_PATH")
    if lib_dir:
        from runtime.serve.hardware import load_ggml_backends

        load_ggml_backends(Path(lib_dir))
    try:
        import llama_cpp
    except ImportError as e:  # pragma: no cover - depends on the install
        raise EngineError(f"llama-cpp-python is not installed: {e}",
                          hint="reinstall llmcrate with its runtime libraries") from e
    if not logger.isEnabledFor(logging.DEBUG):
        logging.getLogger("llama-cpp-python").setLevel(logging.WARNING)
    return llama_cpp


def default_threads() -> int:
    """Physical cores this process may use (what Ollama and llama-server default to)."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    try:
        cpu = phys = core = ""
        for line in [*Path("/proc/cpuinfo").read_text().splitlines(), ""]:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "processor":
                cpu = value
            elif key == "physical id":
                phys = value
            elif key == "core id":
                core = value
            elif not line.strip() and cpu:
                if cpu.isdigit() and int(cpu) in allowed:
                    cores.add((phys, core or cpu))
                cpu = phys = core = ""
    except OSError:
        pass
    return max(1, min(len(cores) or len(allowed), len(allowed)))


def tokenize(lib: Any, vocab: Any, text: str, *, add_bos: bool, special: bool) -> list[int]:
    data = text.encode("utf-8")
    size = len(data) + 8
    while True:
        buf = (lib.llama_token * size)()
        n = lib.llama_tokenize(vocab, data, len(data), buf, size, add_bos, special)
        if n >= 0:
            tokens = list(buf[:n])
            break
        size = -n
    # A Jinja chat template writes bos_token itself; llama.cpp then adds another one for
    # models whose add_bos_token is set. One BOS, as the template intended.
    bos = lib.llama_vocab_bos(vocab)
    if add_bos and len(tokens) >= 2 and tokens[0] == tokens[1] == bos >= 0:
        del tokens[0]
    return tokens


def grammar_for(fmt: Any) -> str | None:
    """Ollama's ``format`` ("json" or a JSON schema object) as GBNF with a ``root`` rule."""
    if fmt is None or fmt == "" or fmt == {}:
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if fmt == "json":
        return JSON_GBNF
    try:
        return json_schema_to_gbnf(json.dumps(fmt))
    except Exception as e:  # noqa: BLE001 - the schema is the client's input
        raise _BadRequest(f"invalid JSON schema in format: {e}") from None


class _BadRequest(Exception):
    """A request the runner refuses with a 400."""


class Runner:
    """Base: the socket, the reader thread, the request bookkeeping."""

    def __init__(self, chan: Channel, lib: Any) -> None:
        self.chan = chan
        self.lib = lib
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="runner-prep")

    def info(self) -> dict[str, Any]:
        raise NotImplementedError

    vocab: Any = None

    def handle(self, msg: dict[str, Any]) -> None:
        """Answer what every runner answers; subclasses add their own ops first."""
        op, rid = msg["op"], msg.get("id")
        if op == "tokenize":
            tokens = tokenize(self.lib, self.vocab, msg["text"], add_bos=msg.get("add_bos", True),
                              special=msg.get("special", True))
            self.send({"op": "result", "id": rid, "tokens": tokens})
        else:
            self.reply_error(rid, 400, f"{op} is not something this runner does")

    def serve_main(self) -> None:
        """The main thread's work until the server goes away."""
        threading.Event().wait()

    def serve(self) -> None:
        threading.Thread(target=self._read, name="runner-reader", daemon=True).start()
        self.serve_main()

    def _read(self) -> None:
        try:
            while True:
                msg = self.chan.recv()
                if msg is None:
                    break
                try:
                    self.handle(msg)
                except Exception as e:
                    logger.exception("request failed")
                    self.reply_error(msg.get("id"), 500, str(e))
        except Exception:
            logger.exception("reading from the server failed")
        # the server is gone (or shut us down): nothing left to serve
        os._exit(0)

    def reply_error(self, rid: Any, status: int, error: str) -> None:
        self.send({"op": "error", "id": rid, "status": status, "error": error})

    def send(self, msg: dict[str, Any]) -> None:
        try:
            self.chan.send(msg)
        except OSError:
            os._exit(0)


class GenerationRunner(Runner):
    """One llama_model, one context with ``n_seq`` sequences, continuous batching."""

    def __init__(self, chan: Channel, lib: Any, opts: LoadOptions, n_seq: int) -> None:
        super().__init__(chan, lib)
        self.opts = opts
        start = time.perf_counter()
        self.model, self.gpu = _load_model(lib, opts)
        self.vocab = lib.llama_model_get_vocab(self.model)
        cp = lib.llama_context_default_params()
        n_batch = max(1, min(opts.n_batch, opts.n_ctx))
        cp.n_ctx = opts.n_ctx * n_seq
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = n_seq
        cp.kv_unified = False          # each sequence its own num_ctx cells (llama-server -np)
        threads = opts.n_threads or default_threads()
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.embeddings = False
        cp.flash_attn_type = (lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if opts.flash_attn
                              else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self.ctx = lib.llama_init_from_model(self.model, cp)
        if not self.ctx:
            lib.llama_model_free(self.model)
            raise EngineError(f"unable to create a context of {cp.n_ctx} tokens for "
                              f"{_model_name}",
                              hint="lower num_ctx or OLLAMA_NUM_PARALLEL")
        if opts.lora_path is not None:
            _apply_lora(lib, self.model, self.ctx, opts.lora_path)
        threads = opts.n_threads or default_threads()
        self.vision = None
        if opts.projector_path is not None:
            from runtime.serve.vision import VisionContext

            self.vision = VisionContext(opts.projector_path, self.model, n_threads=threads,
                                        use_gpu=self.gpu)
        per_seq = int(lib.llama_n_ctx_seq(self.ctx)) if hasattr(lib, "llama_n_ctx_seq") else 0
        self.n_ctx = min(per_seq or opts.n_ctx, opts.n_ctx)
        self.n_seq = n_seq
        self.load_duration = time.perf_counter() - start
        self.loop = BatchLoop(lib, model=self.model, ctx=self.ctx, n_seq=n_seq, n_ctx=self.n_ctx,
                              n_batch=n_batch, emit=self._emit, vision=self.vision,
                              encode_thread=(opts.image_encode == "thread"
                                             or (opts.image_encode == "auto" and self.gpu)))
        self._lock = threading.Lock()
        self._submitted: set[int] = set()
        self._cancelled: set[int] = set()
        logger.info("loaded %s: %d sequences of %d tokens, batch %d, %d threads, gpu=%s, %.2fs%s",
                    opts.model_path.name, n_seq, self.n_ctx, n_batch, threads, self.gpu,
                    self.load_duration,
                    "" if self.vision is None else
                    "; images encoded " + ("on a thread" if self.loop.encode_thread else "inline"))

    def info(self) -> dict[str, Any]:
        return {"n_ctx": self.n_ctx, "n_seq": self.n_seq, "gpu": self.gpu,
                "kv_bytes": _kv_bytes(self.lib, self.model, self.n_ctx * self.n_seq),
                "tokens_per_image": self.vision.tokens_per_image if self.vision else 0}

    def serve_main(self) -> None:
        self.loop.run()

    def handle(self, msg: dict[str, Any]) -> None:
        op, rid = msg["op"], msg.get("id")
        if op == "generate":
            self.pool.submit(self._prepare, msg)
        elif op == "cancel" and rid is not None:
            with self._lock:
                if rid in self._submitted:
                    self.loop.cancel(rid)
                else:
                    self._cancelled.add(rid)
        elif op == "embed":
            self.reply_error(rid, 500, "model was not loaded for embeddings")
        else:
            super().handle(msg)

    def _image_parts(self, prompt: Any, images: list[Any]) -> list[Any]:
        """The prompt split at its ``[img-N]`` tags into text and image bytes (checked)."""
        from runtime.errors import ImageError
        from runtime.serve.vision import check_image, decode_base64_image, split_image_tags

        if self.vision is None:
            raise _BadRequest("this model has no projector: it does not support vision")
        if not isinstance(prompt, str):
            raise _BadRequest("images need a text prompt")
        try:
            data = [decode_base64_image(img, index=i + 1) for i, img in enumerate(images)]
            for i, d in enumerate(data):
                check_image(d, index=i + 1)
            return split_image_tags(prompt, data)
        except ImageError as e:
            raise _BadRequest(str(e)) from None

    def _emit(self, msg: dict[str, Any]) -> None:
        if msg["op"] in ("done", "error"):
            with self._lock:
                self._submitted.discard(msg["id"])
        self.send(msg)

    def _prepare(self, msg: dict[str, Any]) -> None:
        rid = msg["id"]
        try:
            t_start = time.perf_counter_ns()
            opts = SamplingOptions.from_options(msg.get("options") or {})
            prompt = msg.get("prompt", "")
            parts = None
            if msg.get("images"):
                parts = self._image_parts(prompt, msg["images"])
                tokens: list[int] = []
            elif isinstance(prompt, str):
                tokens = tokenize(self.lib, self.vocab, prompt, add_bos=True, special=True)
            else:
                tokens = [int(t) for t in prompt]
                n_vocab = int(self.lib.llama_vocab_n_tokens(self.vocab))
                if any(t < 0 or t >= n_vocab for t in tokens):
                    raise _BadRequest("context holds a token the model does not have")
            if not tokens and parts is None:
                bos = int(self.lib.llama_vocab_bos(self.vocab))
                tokens = [bos if bos >= 0 else int(self.lib.llama_vocab_eos(self.vocab))]
            tokens = fit_prompt(tokens, n_ctx=self.n_ctx, num_predict=opts.num_predict,
                                num_keep=opts.num_keep)
            grammar = grammar_for(msg.get("format"))
            n_vocab = int(self.lib.llama_vocab_n_tokens(self.vocab))
            try:
                sampler = Sampler.build(self.lib, self.vocab, n_vocab, opts, grammar=grammar,
                                        n_ctx=self.n_ctx)
            except EngineError as e:
                raise _BadRequest(str(e)) from None
        except _BadRequest as e:
            self.reply_error(rid, 400, str(e))
            return
        except Exception as e:
            logger.exception("preparing request %s failed", rid)
            self.reply_error(rid, 500, str(e))
            return
        req = Request(id=rid, tokens=tokens, parts=parts, opts=opts, sampler=sampler,
                      grammar=grammar is not None, logprobs=bool(msg.get("logprobs")),
                      top_logprobs=max(0, min(20, int(msg.get("top_logprobs") or 0))),
                      t_start=t_start)
        self.send({"op": "started", "id": rid, "prompt_tokens": len(tokens)})
        with self._lock:
            if rid in self._cancelled:
                self._cancelled.discard(rid)
                sampler.close()
                logger.info("request %d cancelled after 0 of %d prompt tokens", rid, len(tokens))
                self.send({"op": "done", "id": rid, "text": "", "done_reason": "cancel",
                           "prompt_eval_count": 0, "prompt_eval_duration": 0, "eval_count": 0,
                           "eval_duration": 0, "context": []})
                return
            self._submitted.add(rid)
            self.loop.submit(req)


class EmbeddingRunner(Runner):
    """An embedding model through llama-cpp-python's ``Llama(embedding=True)``."""

    def __init__(self, chan: Channel, lib: Any, opts: LoadOptions) -> None:
        super().__init__(chan, lib)
        kwargs: dict[str, Any] = {
            "model_path": str(opts.model_path), "n_ctx": opts.n_ctx, "n_batch": opts.n_ctx,
            "n_ubatch": opts.n_ctx, "n_gpu_layers": opts.n_gpu_layers, "main_gpu": opts.main_gpu,
            "use_mmap": opts.use_mmap, "embedding": True, "flash_attn": opts.flash_attn, "verbose": False}
        threads = opts.n_threads or default_threads()
        kwargs["n_threads"] = kwargs["n_threads_batch"] = threads
        try:
            self.llm = lib.Llama(**kwargs)
        except Exception as e:
            raise EngineError(f"unable to load model {_model_name}: {e}",
                              hint="the file may be corrupt or need more memory than is free"
                              ) from e
        self.opts = opts
        self.vocab = self.llm._model.vocab
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        n_ctx = min(int(self.llm.n_ctx()), self.opts.n_ctx)
        return {"n_ctx": n_ctx, "n_seq": 1, "gpu": _gpu(self.lib) and self.opts.n_gpu_layers != 0,
                "kv_bytes": _kv_bytes(self.lib, self.llm._model.model, n_ctx)}

    def handle(self, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "embed":
            self.pool.submit(self._embed, msg)
        elif op == "generate":
            self.reply_error(msg.get("id"), 400, "generate needs a model loaded for generation")
        elif op != "cancel":
            super().handle(msg)

    def _embed(self, msg: dict[str, Any]) -> None:
        rid = msg["id"]
        try:
            vectors, total = self.embed(list(msg["texts"]), truncate=bool(msg.get("truncate", True)),
                                        normalize_=bool(msg.get("normalize", True)))
        except _BadRequest as e:
            self.reply_error(rid, 400, str(e))
            return
        except Exception as e:  # noqa: BLE001
            self.reply_error(rid, 500, f"embedding failed: {e}")
            return
        self.send({"op": "result", "id": rid, "vectors": vectors, "count": total})

    def embed(self, texts: list[str], *, truncate: bool, normalize_: bool
              ) -> tuple[list[list[float]], int]:
        with self._lock:
            limit = min(int(self.llm.n_ctx()), int(self.llm.n_batch))
            vectors: list[list[float]] = []
            total = 0
            for text in texts:
                n = len(tokenize(self.lib, self.vocab, text, add_bos=True, special=True))
                if n > limit and not truncate:
                    raise _BadRequest("input length exceeds maximum context length")
                out, count = self.llm.embed(text, truncate=True, return_count=True)
                total += int(count)
                if out and isinstance(out[0], list):   # no pooling in the model: mean-pool
                    dim = len(out[0])
                    out = [sum(row[i] for row in out) / len(out) for i in range(dim)]
                vec = [float(v) for v in out]
                try:
                    vectors.append(normalize(vec) if normalize_ else vec)
                except EngineError as e:
                    raise _BadRequest(str(e)) from None
            return vectors, total


def _gpu(lib: Any) -> bool:
    try:
        return bool(lib.llama_supports_gpu_offload())
    except Exception:  # noqa: BLE001 - older builds lack the probe
        return False


def _load_model(lib: Any, opts: LoadOptions) -> tuple[Any, bool]:
    """The llama_model, and whether layers went to a GPU; a failed GPU load retries on the CPU."""
    path = opts.model_path
    if not path.is_file():
        raise EngineError(f"the weights of {_model_name} are missing")
    gpu = opts.n_gpu_layers != 0 and _gpu(lib)
    lib.llama_backend_init()
    mp = lib.llama_model_default_params()
    mp.n_gpu_layers = opts.n_gpu_layers if gpu else 0
    mp.main_gpu = opts.main_gpu
    mp.use_mmap = opts.use_mmap
    model = lib.llama_model_load_from_file(str(path).encode(), mp)
    if not model and gpu:
        logger.warning("loading %s on the GPU failed; retrying on the CPU", path.name)
        mp.n_gpu_layers = 0
        gpu = False
        model = lib.llama_model_load_from_file(str(path).encode(), mp)
    if not model:
        raise EngineError(f"unable to load model {_model_name}",
                          hint="the file may be corrupt or need more memory than is free")
    return model, gpu


def _apply_lora(lib: Any, model: Any, ctx: Any, path: Path) -> None:
    adapter = lib.llama_adapter_lora_init(model, str(path).encode())
    if not adapter:
        raise EngineError(f"unable to load the adapter of {_model_name}")
    arr = (lib.llama_adapter_lora_p_ctypes * 1)(adapter)
    scales = (ctypes.c_float * 1)(1.0)
    if lib.llama_set_adapters_lora(ctx, arr, 1, scales) != 0:
        raise EngineError(f"unable to apply the adapter of {_model_name}")


def _kv_bytes(lib: Any, model: Any, cells: int) -> int:
    """Size of an f16 KV cache of ``cells`` tokens (what /api/ps adds to the weights)."""
    try:
        n_layer = lib.llama_model_n_layer(model)
        n_embd = lib.llama_model_n_embd(model)
        n_head = max(1, lib.llama_model_n_head(model))
        n_head_kv = lib.llama_model_n_head_kv(model)
        return int(cells) * n_layer * 2 * (n_embd * n_head_kv // n_head) * 2
    except Exception:  # noqa: BLE001 - informational only
        return 0


def main(argv: list[str]) -> int:
    level = logging.DEBUG if os.environ.get("LLMCRATE_RUNNER_DEBUG") else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(message)s")
    sock = socket.socket(fileno=int(argv[0]))
    chan = Channel(sock)
    msg = chan.recv()
    if msg is None or msg.get("op") != "load":
        return 2
    global _model_name  # noqa: PLW0603 (one model per runner process)
    if msg.get("name"):
        _model_name = json.dumps(str(msg["name"]))      # quoted, as Ollama names models
    spec = msg["spec"]
    opts = LoadOptions(**{**spec, "model_path": Path(spec["model_path"]),
                          "lora_path": Path(spec["lora_path"]) if spec.get("lora_path") else None})
    try:
        lib = import_llama()
        runner: Runner = (EmbeddingRunner(chan, lib, opts) if opts.embedding
                          else GenerationRunner(chan, lib, opts, max(1, int(msg.get("n_seq", 1)))))
    except EngineError as e:
        chan.send({"op": "load_error", "error": str(e), "hint": e.hint})
        return 1
    chan.send({"op": "ready", "info": runner.info()})
    runner.serve()
    return 0
