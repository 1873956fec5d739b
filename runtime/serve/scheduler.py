"""Which models are loaded, for how long, and who may use them now. No HTTP here.

Semantics follow Ollama's server/sched.go:

- A model loads on first use and stays loaded for ``keep_alive`` after its last request
  (the request's value, else ``OLLAMA_KEEP_ALIVE``); 0 unloads as soon as it is idle,
  ``math.inf`` (any negative duration) never unloads.
- At most ``OLLAMA_MAX_LOADED_MODELS`` runners are loaded; to load one more, the least
  recently used idle runner is unloaded (or the request waits until one is idle).
- Each runner is one process (:class:`~runtime.serve.runner.process.RunnerProcess`) holding the model
  once and serving ``OLLAMA_NUM_PARALLEL`` requests at once, batched in one context; further
  requests wait. A runner that dies fails only its own requests, leaves ``/api/ps`` at once,
  and the next request starts a fresh one.
- At most ``OLLAMA_MAX_QUEUE`` requests wait in all; beyond that :class:`ServerBusy`.
- Loading happens in worker threads (starting a process and waiting for its model), so it
  never blocks requests to other models, and a load that fails is reported to the requests
  waiting for it while the server stays up.

All state lives on the event loop thread and is changed without awaiting in between, so
no lock is needed; waiters park on futures and re-check when anything changes.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from runtime.config import Settings
from runtime.errors import EngineError, LlmcrateError, ServerBusy
from runtime.format import rfc3339_nano
from runtime.serve.engine import LoadOptions, check_memory, file_size
from runtime.serve.runner.process import RunnerProcess

#: Starts a runner for a model (its load options and name) with this many parallel sequences.
Loader = Callable[["ModelRef", int], RunnerProcess]


def start_runner(ref: ModelRef, n_seq: int, *, timeout: float | None = None) -> RunnerProcess:
    """The default loader: refuse what cannot fit in memory (as Ollama does), then start a
    runner process and wait for its model."""
    options = ref.load
    runtime = os.environ.get("LLMCRATE_ACTIVE_RUNTIME", "cpu")
    if options.n_gpu_layers == 0 or not runtime.startswith(("cuda", "rocm")):
        check_memory(options, n_seq=n_seq)
    return RunnerProcess.start(options, n_seq=n_seq, timeout=timeout, name=ref.name)

logger = logging.getLogger(__name__)

#: Go's time.Now().Add(math.MaxInt64) lands about 292 years out; Ollama shows that for "forever".
_FOREVER = dt.timedelta(days=292 * 365)


@dataclass(frozen=True)
class ModelRef:
    """What the scheduler needs to know about a model to load it and list it in ``/api/ps``."""

    name: str                  # display name, e.g. "tiny:latest"
    digest: str                # manifest digest (the model ID)
    load: LoadOptions
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, LoadOptions]:
        return (self.digest, self.load)


@dataclass
class Runner:
    """One loaded model: a runner process serving up to ``max_slots`` requests at once."""

    ref: ModelRef
    process: RunnerProcess | None = None
    loading: int = 0
    active: int = 0
    max_slots: int = 1
    keep_alive: float = 300.0
    expires_at: float | None = None       # wall clock, set while idle
    last_used: float = field(default_factory=time.monotonic)
    expire_when_idle: bool = False
    error: LlmcrateError | None = None
    timer: asyncio.TimerHandle | None = None
    closed: bool = False

    @property
    def loaded(self) -> bool:
        return self.process is not None

    @property
    def size(self) -> int:
        kv = self.process.memory_size if self.process is not None else 0
        return file_size(self.ref.load.model_path) + kv


@dataclass
class Lease:
    """The right to run one request on a runner until :meth:`Scheduler.release`."""

    runner: Runner
    engine: RunnerProcess
    released: bool = False


@dataclass(frozen=True)
class LoadedModel:
    """One row of ``/api/ps``."""

    name: str
    digest: str
    size: int
    size_vram: int
    expires_at: dt.datetime
    context_length: int
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "model": self.name, "size": self.size, "digest": _bare(self.digest),
            "details": self.details, "expires_at": _iso(self.expires_at),
            "size_vram": self.size_vram, "context_length": self.context_length,
        }


def _bare(digest: str) -> str:
    return digest.split(":", 1)[1] if digest.startswith("sha256:") else digest


def _iso(when: dt.datetime) -> str:
    return rfc3339_nano(when)       # as Go writes time.Time, like every other time we answer


def _close_late(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is None:
        fut.result().close()


class Scheduler:
    """Loads, shares and unloads runners. Use from one asyncio event loop."""

    def __init__(self, settings: Settings, *, loader: Loader | None = None) -> None:
        self.settings = settings
        self._loader: Loader = loader or (lambda ref, n: start_runner(
            ref, n, timeout=settings.load_timeout))
        self._runners: dict[tuple[str, LoadOptions], Runner] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._pending = 0
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="llmcrate-load")

    # -- acquiring ---------------------------------------------------------------------------
    async def acquire(self, ref: ModelRef, *, keep_alive: float | None = None) -> Lease:
        """Wait for a free slot in a runner of ``ref``'s model, starting it if needed.

        Raises:
            ServerBusy: ``OLLAMA_MAX_QUEUE`` requests are already waiting.
            EngineError: the model cannot be loaded.
        """
        if self._pending >= self.settings.max_queue:
            raise ServerBusy()
        keep = self.settings.keep_alive if keep_alive is None else keep_alive
        self._pending += 1
        runner: Runner | None = None
        try:
            while True:
                if self._closed:
                    raise EngineError("server is shutting down")
                if runner is not None and runner.error is not None and not runner.loaded:
                    raise runner.error
                runner = self._runner_for(ref)
                if runner is not None:
                    lease = self._take(runner, keep)
                    if lease is not None:
                        return lease
                await self._wait()
        finally:
            self._pending -= 1

    def _runner_for(self, ref: ModelRef) -> Runner | None:
        runner = self._runners.get(ref.key)
        if runner is not None:
            return runner
        while len(self._runners) >= self.settings.max_loaded_models:
            victim = self._lru_idle()
            if victim is None:
                return None          # everything is busy: wait for a release
            logger.info("unloading %s to make room for %s", victim.ref.name, ref.name)
            self._unload(victim)
        # a model asked for with other load options (num_ctx, ...) replaces its older runner
        # once idle, as Ollama reloads; its embedding runner is a separate thing and stays
        for other in list(self._runners.values()):
            if other.ref.digest == ref.digest and other.ref.load.embedding == ref.load.embedding:
                other.expire_when_idle = True
                if other.active == 0 and other.loading == 0:
                    self._unload(other)
        runner = Runner(ref=ref, max_slots=self.settings.num_parallel)
        self._runners[ref.key] = runner
        return runner

    def _take(self, runner: Runner, keep_alive: float) -> Lease | None:
        if runner.process is not None and runner.active < runner.max_slots:
            runner.active += 1
            runner.keep_alive = keep_alive
            runner.expires_at = None
            runner.last_used = time.monotonic()
            if runner.timer is not None:
                runner.timer.cancel()
                runner.timer = None
            return Lease(runner=runner, engine=runner.process)
        if runner.process is None and runner.loading == 0:
            runner.loading += 1
            asyncio.get_running_loop().create_task(self._load(runner))
        return None

    async def _load(self, runner: Runner) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._pool, self._loader, runner.ref, runner.max_slots)
        try:
            engine = await asyncio.wait_for(asyncio.shield(fut), self.settings.load_timeout)
        except Exception as e:  # noqa: BLE001 - every failure must reach the waiting requests
            if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
                # the thread cannot be stopped; close what it loads once it is done
                fut.add_done_callback(_close_late)
                err: LlmcrateError = EngineError(
                    f"timed out waiting for {runner.ref.name} to load "
                    f"(OLLAMA_LOAD_TIMEOUT {self.settings.load_timeout:g}s)")
            else:
                err = e if isinstance(e, LlmcrateError) else EngineError(
                    f"unable to load model {runner.ref.name}: {e}")
            logger.warning("loading %s failed: %s", runner.ref.name, err)
            runner.loading -= 1
            runner.error = err
            if self._runners.get(runner.ref.key) is runner:
                del self._runners[runner.ref.key]
            self._wake()
            return
        runner.loading -= 1
        if runner.closed:
            self._close(engine)
            self._wake()
            return
        runner.process = engine
        engine.on_exit = lambda proc: loop.call_soon_threadsafe(self._runner_exited, runner, proc)
        if not engine.alive:                 # died before the callback was in place
            self._runner_exited(runner, engine)
        self._wake()

    def _runner_exited(self, runner: Runner, proc: RunnerProcess) -> None:
        """A runner process died: its requests already failed; forget it so the next
        request starts a fresh one, and ``/api/ps`` no longer lists it."""
        if runner.process is not proc or runner.closed:
            return
        logger.warning("runner for %s exited; it will be restarted on the next request",
                       runner.ref.name)
        self._forget(runner)
        self._wake()

    # -- releasing ---------------------------------------------------------------------------
    def release(self, lease: Lease) -> None:
        """Give the slot back (event loop thread only). Idempotent."""
        if lease.released:
            return
        lease.released = True
        runner = lease.runner
        runner.active -= 1
        runner.last_used = time.monotonic()
        if runner.active == 0:
            if runner.closed:
                if runner.process is not None:
                    self._close(runner.process)
            else:
                self._idle(runner)
        self._wake()

    def _idle(self, runner: Runner) -> None:
        if runner.expire_when_idle or runner.keep_alive <= 0:
            self._unload(runner)
            return
        if math.isinf(runner.keep_alive):
            runner.expires_at = None
            return
        runner.expires_at = time.time() + runner.keep_alive
        loop = asyncio.get_running_loop()
        runner.timer = loop.call_later(runner.keep_alive, self._on_timer, runner)

    def _on_timer(self, runner: Runner) -> None:
        runner.timer = None
        if runner.active == 0 and not runner.closed:
            logger.info("keep_alive expired for %s", runner.ref.name)
            self._unload(runner)
            self._wake()

    # -- unloading ---------------------------------------------------------------------------
    def expire(self, *, digest: str) -> bool:
        """Unload a model now, or as soon as its running requests finish (``keep_alive: 0``)."""
        found = False
        for runner in list(self._runners.values()):
            if runner.ref.digest == digest:
                found = True
                runner.expire_when_idle = True
                if runner.active == 0 and runner.loading == 0:
                    self._unload(runner)
        self._wake()
        return found

    def _forget(self, runner: Runner) -> None:
        """Take a runner out of service: no timer, no new requests, not in ``/api/ps``."""
        runner.closed = True
        if runner.timer is not None:
            runner.timer.cancel()
            runner.timer = None
        if self._runners.get(runner.ref.key) is runner:
            del self._runners[runner.ref.key]

    def _unload(self, runner: Runner) -> None:
        if runner.closed:
            return
        self._forget(runner)
        if runner.active == 0 and runner.process is not None:
            self._close(runner.process)      # else when its last request is released
        logger.info("unloaded %s", runner.ref.name)

    def _close(self, process: RunnerProcess) -> None:
        """Stop off the event loop (a process takes a moment to exit); inline after shutdown."""
        try:
            self._pool.submit(process.close)
        except RuntimeError:
            process.close()

    def _lru_idle(self) -> Runner | None:
        idle = [r for r in self._runners.values() if r.active == 0 and r.loading == 0]
        return min(idle, key=lambda r: r.last_used) if idle else None

    # -- waiting -----------------------------------------------------------------------------
    async def _wait(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- reporting ---------------------------------------------------------------------------
    def loaded(self) -> list[LoadedModel]:
        """What ``/api/ps`` shows: loaded models, longest remaining time first; one row per
        model even when it has a generation and an embedding runner (sizes added up)."""
        now = dt.datetime.now(dt.timezone.utc)
        rows: dict[str, LoadedModel] = {}
        # generation runners first, so a model's row shows the context it generates with
        for r in sorted(self._runners.values(), key=lambda r: r.ref.load.embedding):
            if r.process is None or not r.process.alive:
                continue
            if r.active == 0 and r.expires_at is not None:
                expires = dt.datetime.fromtimestamp(r.expires_at, dt.timezone.utc)
            elif math.isinf(r.keep_alive):
                expires = now + _FOREVER
            else:
                expires = now + dt.timedelta(seconds=r.keep_alive)
            size = r.size
            vram = size if r.process.info.gpu else 0
            row = LoadedModel(name=r.ref.name, digest=r.ref.digest, size=size, size_vram=vram,
                              expires_at=expires, context_length=r.ref.load.n_ctx,
                              details=r.ref.details)
            seen = rows.get(r.ref.digest)
            if seen is not None:
                extra = file_size(r.ref.load.model_path)     # the weights count once
                row = dataclasses.replace(
                    seen, size=seen.size + size - extra,
                    size_vram=seen.size_vram + max(0, vram - extra),
                    expires_at=max(seen.expires_at, expires))
            rows[r.ref.digest] = row
        return sorted(rows.values(), key=lambda m: m.expires_at, reverse=True)

    @property
    def pending(self) -> int:
        return self._pending

    async def shutdown(self) -> None:
        """Unload everything; engines still generating close when released."""
        self._closed = True
        for runner in list(self._runners.values()):
            self._unload(runner)
        self._wake()
        self._pool.shutdown(wait=False)
