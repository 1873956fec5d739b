"""The continuous-batching loop of a runner: one model, one context, ``n_seq`` sequences.

Like llama-server's slots: every step builds one ``llama_batch`` holding the next token of
each generating sequence plus chunks of waiting prompts (up to ``n_batch`` tokens in all),
runs one ``llama_decode``, and samples every sequence whose last token was in the batch with
that sequence's own sampler chain. New requests join between steps; a cancelled request
leaves between steps, so a disconnect frees its slot within one prompt chunk.

Each slot remembers the tokens its KV cache holds; a new request goes to the free slot that
shares the longest prefix with its prompt and evaluates only the rest (prompt cache reuse).
A full context keeps ``num_keep`` tokens and drops half of the rest (Ollama's context shift).

A prompt with images holds its slot while the projector encodes its images, then the loop
decodes the embeddings into the slot's sequence between two steps. With ``encode_thread`` the
projector runs on an encoder thread (one image at a time) and the other sequences keep
generating meanwhile; without it, the encode runs between two steps and every sequence waits
(the better choice on a CPU whose cores the decode already uses: docs/benchmarks.md).

Runs on the runner's main thread only; other threads talk to it through :meth:`submit`
and :meth:`cancel`.
"""
from __future__ import annotations

import codecs
import concurrent.futures
import ctypes
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from runtime.serve.engine import SamplingOptions, StopMatcher
from runtime.serve.runner.sampling import Sampler

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


@dataclass
class Request:
    """A generation accepted by the runner, tokenized, with its sampler built."""

    id: int
    tokens: list[int]
    opts: SamplingOptions
    sampler: Sampler
    grammar: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    t_start: int = field(default_factory=time.perf_counter_ns)
    #: a prompt with images: text (str) and image (bytes) parts, evaluated through the
    #: projector when the request starts (``tokens`` is then empty)
    parts: list[Any] | None = None
    prompt_count: int = 0


@dataclass
class _Active:
    req: Request
    done_prompt: int                       # prompt tokens whose KV is in the cache
    budget: int
    decoder: Any
    stops: StopMatcher
    generated: list[int] = field(default_factory=list)
    pending: int | None = None             # sampled, not yet decoded
    t_first: int = 0
    encoding: concurrent.futures.Future[Any] | None = None   # images being encoded (see top)


@dataclass
class _Slot:
    seq: int
    cache: list[int] = field(default_factory=list)   # tokens at positions 0..len-1
    active: _Active | None = None
    last_used: float = 0.0


class BatchLoop:
    """Owns the context's sequences. ``run`` until :meth:`stop`."""

    def __init__(self, llama_cpp: Any, *, model: Any, ctx: Any, n_seq: int, n_ctx: int,
                 n_batch: int, emit: Emit, vision: Any = None, encode_thread: bool = False) -> None:
        self.lib = llama_cpp
        self.model = model
        self.ctx = ctx
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.can_shift = bool(llama_cpp.llama_memory_can_shift(self.mem))
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.emit = emit
        self.vision = vision
        self.slots = [_Slot(seq=i) for i in range(n_seq)]
        self.batch = llama_cpp.llama_batch_init(n_batch + n_seq, 0, 1)
        self._inbox: queue.Queue[Request | None] = queue.Queue()
        self._waiting: list[Request] = []
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        self._encoder: concurrent.futures.ThreadPoolExecutor | None = None
        self.encode_thread = encode_thread

    # -- from other threads ------------------------------------------------------------------
    def submit(self, req: Request) -> None:
        self._inbox.put(req)

    def cancel(self, request_id: int) -> None:
        with self._lock:
            self._cancelled.add(request_id)
        self._inbox.put(None)          # wake an idle loop

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until the process ends (the runner exits when the server goes away)."""
        try:
            while True:
                self._take_new(block=not self._busy())
                self._drop_cancelled()
                self._encoded()
                self._assign()
                if self._busy():
                    self.step()
        finally:
            self.lib.llama_batch_free(self.batch)
            if self._encoder is not None:
                self._encoder.shutdown(wait=False)

    def _busy(self) -> bool:
        """Whether a step has work; a slot whose images are being encoded has none yet (the
        encoder wakes the loop when it is done)."""
        return any(s.active is not None and s.active.encoding is None for s in self.slots)

    def _take_new(self, *, block: bool) -> None:
        try:
            item = self._inbox.get(block=block and not self._waiting)
            while True:
                if item is not None:
                    self._waiting.append(item)
                item = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _drop_cancelled(self) -> None:
        with self._lock:
            if not self._cancelled:
                return
            cancelled = set(self._cancelled)
        found: set[int] = set()
        for req in [r for r in self._waiting if r.id in cancelled]:
            found.add(req.id)
            self._waiting.remove(req)
            logger.info("request %d cancelled after 0 of %d prompt tokens", req.id,
                        len(req.tokens))
            req.sampler.close()
            self.emit({"op": "done", "id": req.id, "done_reason": "cancel",
                       "prompt_eval_count": 0, "prompt_eval_duration": 0,
                       "eval_count": 0, "eval_duration": 0, "context": []})
        for slot in self.slots:
            if slot.active is not None and slot.active.req.id in cancelled:
                found.add(slot.active.req.id)
                self._finish(slot, "cancel")
        # an id not found yet may still be on its way in through the inbox
        with self._lock:
            self._cancelled -= found

    def _assign(self) -> None:
        """Waiting requests go to free slots, each to the one sharing its longest prefix."""
        while self._waiting:
            free = [s for s in self.slots if s.active is None]
            if not free:
                return
            req = self._waiting.pop(0)
            slot = max(free, key=lambda s: (_common_prefix(s.cache, req.tokens), -s.last_used))
            self._start(slot, req)

    def _start(self, slot: _Slot, req: Request) -> None:
        if req.parts is not None:
            self._start_with_images(slot, req)
            return
        req.prompt_count = len(req.tokens)
        keep = _common_prefix(slot.cache, req.tokens)
        if keep >= len(req.tokens):
            keep = len(req.tokens) - 1            # re-evaluate the last token for its logits
        if keep < len(slot.cache):
            if not self.lib.llama_memory_seq_rm(self.mem, slot.seq, keep, -1):
                self.lib.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
                keep = 0
            del slot.cache[keep:]
        self._activate(slot, req, keep)
        if keep:
            logger.debug("seq %d reuses %d cached prompt tokens of %d", slot.seq, keep,
                         len(req.tokens))

    def _activate(self, slot: _Slot, req: Request, done_prompt: int) -> None:
        slot.active = _Active(req=req, done_prompt=done_prompt, budget=self._budget(req),
                              decoder=codecs.getincrementaldecoder("utf-8")(errors="replace"),
                              stops=StopMatcher(req.opts.stop))

    def _budget(self, req: Request) -> int:
        """How many tokens the request may generate."""
        if req.opts.num_predict > 0:
            return req.opts.num_predict
        if req.opts.num_predict == -2:             # fill the context
            return self.n_ctx - req.prompt_count
        return 10 * self.n_ctx                     # until the model stops; Ollama's cap

    def _start_with_images(self, slot: _Slot, req: Request) -> None:
        """Hold the slot and encode the prompt's images (:meth:`_encode`) on the encoder thread,
        or here; :meth:`_encoded` takes it from there."""
        self.lib.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
        slot.cache.clear()
        self._activate(slot, req, 0)
        assert slot.active is not None
        if self.encode_thread:
            if self._encoder is None:
                self._encoder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="encode")
            slot.active.encoding = self._encoder.submit(self._encode, req)
            return
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            done.set_result(self._encode(req))
        except Exception as e:  # noqa: BLE001 (handed on exactly as the encoder thread's would be)
            done.set_exception(e)
        slot.active.encoding = done

    def _encode(self, req: Request) -> tuple[Any, list[Any]]:
        """On the encoder thread: tokenize the prompt with its images and run the projector."""
        try:
            prompt = self.vision.tokenize(req.parts)
            try:
                if prompt.n_pos >= self.n_ctx:
                    raise _TooLong(f"the prompt with its images needs {prompt.n_pos} positions, "
                                   f"more than the context of {self.n_ctx} (num_ctx)")
                req.prompt_count = prompt.n_tokens
                return prompt, self.vision.encode(prompt)
            except BaseException:
                prompt.close()
                raise
        finally:
            self._inbox.put(None)          # wake the loop

    def _encoded(self) -> None:
        """Decode the prompts whose images are encoded, then sample their first tokens."""
        from runtime.errors import LlmcrateError

        for slot in self.slots:
            a = slot.active
            if a is None or a.encoding is None or not a.encoding.done():
                continue
            req = a.req
            try:
                prompt, embeddings = a.encoding.result()
            except (LlmcrateError, _TooLong) as e:
                slot.active = None
                req.sampler.close()
                slot.last_used = time.monotonic()
                self.emit({"op": "error", "id": req.id, "status": 400, "error": str(e)})
                continue
            a.encoding = None
            try:
                result = self.vision.eval_encoded(self.ctx, prompt, embeddings, seq_id=slot.seq,
                                                  n_past=0, n_batch=self.n_batch)
            except LlmcrateError as e:
                slot.active = None
                req.sampler.close()
                slot.last_used = time.monotonic()
                self.emit({"op": "error", "id": req.id, "status": 400, "error": str(e)})
                continue
            finally:
                prompt.close()
            # positions, not tokens, fill the cache; -1 never matches a later prompt's token
            slot.cache.extend([-1] * result.n_past)
            a.done_prompt = result.n_tokens
            a.budget = self._budget(req)           # prompt_count is known now
            self._sampled(slot, -1)

    # -- one decode step ---------------------------------------------------------------------
    def step(self) -> None:
        b = self.batch
        n = 0
        outputs: list[tuple[_Slot, int]] = []
        # the next token of every generating sequence first: decoding never waits on prompts
        for slot in self.slots:
            a = slot.active
            if a is None or a.pending is None:
                continue
            if len(slot.cache) + 1 >= self.n_ctx and not self._make_room(slot):
                continue
            self._put(b, n, a.pending, len(slot.cache), slot.seq, True)
            slot.cache.append(a.pending)
            a.generated.append(a.pending)
            a.pending = None
            outputs.append((slot, n))
            n += 1
        # then chunks of prompts, within num_batch
        for slot in self.slots:
            a = slot.active
            if a is None or a.done_prompt >= len(a.req.tokens):   # (image prompts: no tokens)
                continue
            room = self.n_batch - n
            if room <= 0:
                break
            tokens = a.req.tokens
            end = min(len(tokens), a.done_prompt + room)
            for i in range(a.done_prompt, end):
                last = i == len(tokens) - 1
                self._put(b, n, tokens[i], i, slot.seq, last)
                if last:
                    outputs.append((slot, n))
                n += 1
            slot.cache.extend(tokens[a.done_prompt:end])
            a.done_prompt = end
        if n == 0:
            return
        b.n_tokens = n
        rc = self.lib.llama_decode(self.ctx, b)
        if rc != 0:
            self._decode_failed(rc)
            return
        for slot, idx in outputs:
            self._sampled(slot, idx)

    @staticmethod
    def _put(b: Any, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits

    def _make_room(self, slot: _Slot) -> bool:
        """A full context: shift it (Ollama), or end the reply where a shift is not allowed."""
        a = slot.active
        assert a is not None
        if (a.req.grammar or a.req.opts.num_predict == -2 or not self.can_shift
                or not a.generated):
            self._finish(slot, "length")
            return False
        n_past = len(slot.cache)
        keep = max(0, min(a.req.opts.num_keep, n_past - 2))
        discard = max(1, (n_past - keep) // 2)
        self.lib.llama_memory_seq_rm(self.mem, slot.seq, keep, keep + discard)
        self.lib.llama_memory_seq_add(self.mem, slot.seq, keep + discard, n_past, -discard)
        del slot.cache[keep:keep + discard]
        logger.debug("seq %d context shift: kept %d, discarded %d of %d", slot.seq, keep,
                     discard, n_past)
        return True

    def _sampled(self, slot: _Slot, idx: int) -> None:
        a = slot.active
        if a is None:
            return
        token = a.req.sampler.sample(self.ctx, idx)
        if not a.t_first:
            a.t_first = time.perf_counter_ns()
        if self.lib.llama_vocab_is_eog(self.vocab, token):
            self._finish(slot, "stop")
            return
        piece = self.piece(token)
        message: dict[str, Any] = {"op": "chunk", "id": a.req.id}
        if a.req.logprobs:
            message["logprobs"] = [self._logprob(idx, token, piece, a.req.top_logprobs)]
        a.pending = token
        a.budget -= 1
        text, hit = a.stops.feed(a.decoder.decode(piece))
        if text or "logprobs" in message:
            message["text"] = text
            self.emit(message)
        if hit:
            a.generated.append(token)       # the stop string's tokens count, as in Ollama
            a.pending = None
            self._finish(slot, "stop", flushed=True)
        elif a.budget <= 0:
            a.generated.append(token)
            a.pending = None
            self._finish(slot, "length")

    def _finish(self, slot: _Slot, reason: str, *, flushed: bool = False) -> None:
        a = slot.active
        if a is None:
            return
        slot.active = None
        slot.last_used = time.monotonic()
        if a.encoding is not None:         # cancelled while its images were being encoded
            a.encoding.add_done_callback(_free_encoded)
        if a.pending is not None:          # sampled but never decoded: not in the cache
            a.generated.append(a.pending)
        # the KV cache holds what was decoded; keep it for the next request's prefix
        tail = "" if flushed else a.stops.flush() + a.decoder.decode(b"", final=True)
        now = time.perf_counter_ns()
        t_first = a.t_first or now
        a.req.sampler.close()
        if reason == "cancel":
            logger.info("request %d cancelled after %d of %d prompt tokens, %d generated",
                        a.req.id, a.done_prompt, a.req.prompt_count, len(a.generated))
        self.emit({
            "op": "done", "id": a.req.id, "text": tail, "done_reason": reason,
            "prompt_eval_count": a.req.prompt_count,
            "prompt_eval_duration": max(1, t_first - a.req.t_start),
            "eval_count": len(a.generated),
            "eval_duration": max(1, now - t_first) if a.generated else 0,
            "context": a.req.tokens + a.generated,
        })

    def _decode_failed(self, rc: int) -> None:
        logger.error("llama_decode failed (%d)", rc)
        for slot in self.slots:
            if slot.active is None:
                continue
            req = slot.active.req
            slot.active = None
            req.sampler.close()
            self.lib.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
            slot.cache.clear()
            self.emit({"op": "error", "id": req.id, "status": 500,
                       "error": f"llama_decode failed ({rc}): the context may be full"})

    # -- tokens ------------------------------------------------------------------------------
    def piece(self, token: int) -> bytes:
        return token_piece(self.lib, self.vocab, token)

    def _logprob(self, idx: int, token: int, piece: bytes, top: int) -> dict[str, Any]:
        import numpy as np

        ptr = self.lib.llama_get_logits_ith(self.ctx, idx)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
        m = float(logits.max())
        lse = m + math.log(float(np.exp(logits - m).sum()))
        entry = _lp_entry(piece, float(logits[token]) - lse)
        if top > 0:
            best = np.argpartition(-logits, min(top, self.n_vocab - 1))[:top]
            best = best[np.argsort(-logits[best])]
            entry["top_logprobs"] = [_lp_entry(self.piece(int(t)), float(logits[t]) - lse)
                                     for t in best]
        return entry


def _free_encoded(done: concurrent.futures.Future[Any]) -> None:
    """Free the tokenized prompt of an encode nobody waits for any more."""
    if not done.cancelled() and done.exception() is None:
        done.result()[0].close()


def _lp_entry(piece: bytes, logprob: float) -> dict[str, Any]:
    return {"token": piece.decode("utf-8", errors="replace"), "logprob": logprob,
            "bytes": list(piece)}


class _TooLong(Exception):
    pass


def token_piece(llama_cpp: Any, vocab: Any, token: int) -> bytes:
    """The bytes of one token, special tokens written out as text (as Ollama does)."""
    size = 64
    while True:
        buf = (ctypes.c_char * size)()
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, True)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def fit_prompt(tokens: list[int], *, n_ctx: int, num_predict: int, num_keep: int) -> list[int]:
    """A prompt that does not fit the context keeps its first ``num_keep`` tokens and drops the
    oldest after them (Ollama's runner), leaving room to generate."""
    if len(tokens) < n_ctx:
        return tokens
    room = n_ctx // 4 if num_predict < 0 else min(max(num_predict, 1), n_ctx // 2)
    limit = max(1, n_ctx - max(room, 1))
    keep = max(0, min(num_keep, limit - 1))
    logger.warning("prompt of %d tokens truncated to %d (num_ctx %d)", len(tokens), limit, n_ctx)
    return tokens[:keep] + tokens[len(tokens) - (limit - keep):]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
