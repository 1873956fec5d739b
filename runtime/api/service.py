"""The domain side of the API: model lookup, options, keep_alive, ``format`` checks, runner
slots, and running a generation on a runner process while the event loop streams its chunks.

Everything here raises :mod:`runtime.errors` (``InvalidRequest``, ``ModelNotFound``, ...);
the HTTP status each gets is decided in :func:`runtime.api.errors.status_for`.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from runtime.config import Settings, parse_duration
from runtime.errors import (
    ConfigError,
    GGUFError,
    InvalidRequest,
    LlmcrateError,
    ModelNotFound,
)
from runtime.models.model import ModelInfo, load_model_info
from runtime.models.names import parse_name
from runtime.models.store import Store
from runtime.options import check_runner_options, coerce_options, resolve_options
from runtime.serve.engine import Chunk, LoadOptions
from runtime.serve.runner.process import Generation
from runtime.serve.scheduler import Lease, ModelRef, Scheduler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GGUFFacts:
    chat_template: str | None = None
    bos: str = ""
    eos: str = ""
    context_length: int | None = None
    pooling: bool = False        # an embedding model (BERT-like): no text generation


@functools.lru_cache(maxsize=64)
def gguf_facts(path: Path) -> GGUFFacts:
    """Header facts the server needs (blobs are content-addressed, so caching by path is safe)."""
    from runtime.models.gguf_info import read_gguf_info

    try:
        gi = read_gguf_info(path)
    except GGUFError as e:
        logger.warning("%s", e)
        return GGUFFacts()
    arch = gi.kv.get("general.architecture", "")
    return GGUFFacts(gi.chat_template, gi.token("bos") or "", gi.token("eos") or "",
                     gi.context_length, pooling=f"{arch}.pooling_type" in gi.kv)


@dataclass
class Slot:
    """A runner slot leased for one request: its model, merged options and timing."""

    info: ModelInfo
    options: dict[str, Any]
    lease: Lease
    started: int        # perf_counter_ns at request start
    loaded: int         # perf_counter_ns when the engine was ready

    @property
    def load_duration(self) -> int:
        return max(0, self.loaded - self.started)


class Service:
    """The server's store, settings and scheduler, and the steps a request takes through them:
    :meth:`model_info`, :meth:`options`, :meth:`acquire` (load options -> a runner slot),
    :meth:`generate` and :meth:`stream`. :func:`runtime.api.inference.prepare` runs them in
    order."""

    def __init__(self, settings: Settings, store: Store, scheduler: Scheduler) -> None:
        self.settings = settings
        self.store = store
        self.scheduler = scheduler
        self._infos: dict[str, tuple[tuple[int, int, int], ModelInfo]] = {}

    # -- models ------------------------------------------------------------------------------
    async def model_info(self, name: str) -> ModelInfo:
        """The stored model ``name`` names: InvalidRequest when it is missing, InvalidName when
        it breaks the naming rules, ModelNotFound (with the name as the request wrote it)."""
        if not name:
            raise InvalidRequest("model is required", field="model")
        parse_name(name)
        try:
            return await asyncio.to_thread(self._cached_info, name)
        except ModelNotFound:
            raise ModelNotFound(name) from None

    def _cached_info(self, name: str) -> ModelInfo:
        """load_model_info, reread only when the manifest file changes (a stat per request)."""
        try:
            st = self.store.manifest_path(name).stat()
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except (OSError, LlmcrateError):
            key = None
        hit = self._infos.get(name)
        if key is not None and hit is not None and hit[0] == key:
            return hit[1]
        info = load_model_info(self.store, name)
        if key is not None:
            if len(self._infos) > 256:
                self._infos.clear()
            self._infos[name] = (key, info)
        return info

    def options(self, info: ModelInfo, request_options: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults < Modelfile params < request options; unknown names are logged and dropped."""
        typed, warnings = coerce_options(request_options, strict=False)
        for w in warnings:
            logger.warning("%s", w)
        model_params, _ = coerce_options(info.params, strict=False)
        merged = resolve_options(model_params, typed, context_length=self.settings.context_length)
        check_runner_options(merged)
        return merged

    def keep_alive(self, value: Any) -> float | None:
        """A request's ``keep_alive`` in seconds (None: the server's default)."""
        if value is None or value == "":
            return None
        try:
            return parse_duration(value, key="keep_alive")
        except ConfigError as e:
            raise InvalidRequest(str(e), field="keep_alive") from None

    def model_ref(self, info: ModelInfo, options: dict[str, Any], *, embedding: bool) -> ModelRef:
        # like Ollama's llm server: a num_ctx beyond what the model was trained on is clamped
        trained = gguf_facts(info.model_path).context_length
        if trained and int(options.get("num_ctx") or 0) > trained:
            logger.warning("requested context size %s too large for %s; using %d",
                           options.get("num_ctx"), info.name.display, trained)
            options = {**options, "num_ctx": trained}
        if not options.get("num_thread") and self.settings.num_thread:
            options = {**options, "num_thread": self.settings.num_thread}
        load = LoadOptions.from_options(
            model_path=info.model_path, options=options, embedding=embedding,
            lora_path=info.adapters[0] if info.adapters else None,
            projector_path=info.projectors[0] if info.projectors else None,
            default_ctx=self.settings.context_length,
            flash_attn=self.settings.flash_attention, image_encode=self.settings.image_encode)
        return ModelRef(name=info.name.display, digest=info.digest, load=load,
                        details=dict(info.details))

    async def acquire(self, info: ModelInfo, options: dict[str, Any], keep_alive: float | None,
                      *, started: int, embedding: bool = False) -> Slot:
        """A runner slot for ``info`` loaded with ``options`` (waiting in the queue if need be)."""
        ref = self.model_ref(info, options, embedding=embedding)
        lease = await self.scheduler.acquire(ref, keep_alive=keep_alive)
        return Slot(info=info, options=options, lease=lease, started=started,
                    loaded=time.perf_counter_ns())

    def release(self, slot: Slot) -> None:
        self.scheduler.release(slot.lease)

    # -- generation --------------------------------------------------------------------------
    async def generate(self, slot: Slot, prompt: str | list[int], *, fmt: Any,
                       logprobs: bool = False, top_logprobs: int = 0,
                       images: list[str] | None = None) -> Generation:
        """Hand the prompt to the leased runner; returns once the runner accepted it (prompt
        tokenized, sampler and ``format`` grammar built), so such errors precede any answer."""
        return await slot.lease.engine.generate(
            prompt, slot.options, fmt=fmt, logprobs=logprobs, top_logprobs=top_logprobs,
            images=images)

    async def stream(self, slot: Slot, gen: Generation, cancel: CancelToken
                     ) -> AsyncIterator[Chunk]:
        """Yield the generation's chunks; release the slot at the end.

        Setting ``cancel`` (or closing this iterator, as a disconnect does) stops the
        generation at the runner's next step. The slot goes back at once: the runner queues a
        next request behind the cancelled one, which leaves within one decode step.
        """
        cancel.add_callback(gen.cancel)
        try:
            async for chunk in gen.chunks():
                yield chunk
        finally:
            cancel.set()
            self.release(slot)


class CancelToken:
    """A ``threading.Event``-like flag that also stops the generation it is tied to."""

    def __init__(self) -> None:
        self._set = False
        self._callbacks: list[Callable[[], None]] = []

    def add_callback(self, fn: Callable[[], None]) -> None:
        if self._set:
            fn()
        else:
            self._callbacks.append(fn)

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn()

    def is_set(self) -> bool:
        return self._set


def check_format(fmt: Any) -> Any:
    """Ollama's ``format``: "json" or a JSON schema object (also as JSON text). Returns what
    the runner turns into a grammar ("json", a dict, or None); InvalidRequest for anything else."""
    if fmt is None or fmt == "" or fmt == {}:
        return None
    if isinstance(fmt, str):
        if fmt.strip() == "json":
            return "json"
        try:
            fmt = json.loads(fmt)
        except ValueError:
            raise InvalidRequest(f'invalid format: "{fmt}"; expected "json" or a JSON schema',
                                 field="format") from None
    if not isinstance(fmt, dict):
        raise InvalidRequest('invalid format: expected "json" or a JSON schema object',
                             field="format")
    return fmt
