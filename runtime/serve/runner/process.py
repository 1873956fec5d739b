"""The server's side of a runner: start the process, talk to it, notice when it dies.

:class:`RunnerProcess` is what the scheduler hands out. One reader thread per runner takes
its messages and routes each to the request it answers: synchronous calls (tokenize, embed)
wait on a :class:`concurrent.futures.Future`; a generation is an async iterator fed through
the event loop. When the process dies every request still in flight fails with Ollama's
"model runner has unexpectedly stopped" error, and ``on_exit`` tells the scheduler.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from runtime.errors import EngineError
from runtime.serve.engine import Chunk, LoadOptions
from runtime.serve.runner.protocol import Channel, ProtocolError

logger = logging.getLogger(__name__)

#: Ollama's words for a runner that died under a request (server/routes.go).
CRASHED = ("model runner has unexpectedly stopped, this may be due to resource limitations or "
           "an internal error, check logs for details")


class RunnerCrashed(EngineError):
    """The runner process died while this request was in flight."""

    def __init__(self) -> None:
        super().__init__(CRASHED)


class RequestFailed(EngineError):
    """The runner refused or failed one request; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RunnerInfo:
    n_ctx: int
    n_seq: int
    gpu: bool
    kv_bytes: int
    tokens_per_image: int = 0      # 0: no projector


class _Stream:
    """Where a generation's messages go: an asyncio queue on the server's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()

    def put(self, item: dict[str, Any] | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server is shutting down
            pass


class RunnerProcess:
    """A live runner. Thread-safe; ``generate`` must be awaited on one event loop."""

    def __init__(self, proc: subprocess.Popen[bytes], chan: Channel, info: RunnerInfo,
                 options: LoadOptions, name: str, stderr_tail: collections.deque[str]) -> None:
        self.proc = proc
        self.chan = chan
        self.info = info
        self.options = options
        self.name = name
        self._tail = stderr_tail
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, Future[dict[str, Any]] | _Stream] = {}
        self._dead = False
        self._closing = False
        self.on_exit: Callable[[RunnerProcess], object] | None = None
        self._reader = threading.Thread(target=self._read, name=f"runner-{proc.pid}", daemon=True)
        self._reader.start()

    # -- starting ----------------------------------------------------------------------------
    @classmethod
    def start(cls, options: LoadOptions, *, n_seq: int = 1, name: str = "",
              timeout: float | None = None) -> RunnerProcess:
        """Start a runner for ``options`` and wait until its model is loaded.

        Raises:
            EngineError: the model did not load (the runner's reason, or how it died).
        """
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if not env.get("LLMCRATE_DEBUG"):
            env.setdefault("GGML_NO_BACKTRACE", "1")    # no gdb attach on an abort
        cmd = [sys.executable, "-s", "-m", "runtime.serve.runner", str(child.fileno())]
        try:
            proc = subprocess.Popen(cmd, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                    start_new_session=True)
        finally:
            child.close()
        label = name or options.model_path.name
        tail: collections.deque[str] = collections.deque(maxlen=40)
        threading.Thread(target=_relay_stderr, args=(proc, label, tail), daemon=True,
                         name=f"runner-log-{proc.pid}").start()
        chan = Channel(parent)
        spec = {k: (str(v) if isinstance(v, os.PathLike) else v)
                for k, v in dataclasses.asdict(options).items()}
        try:
            chan.send({"op": "load", "spec": spec, "n_seq": n_seq, "name": name})
            if timeout is not None:
                parent.settimeout(timeout)
            msg = chan.recv()
            parent.settimeout(None)
        except (OSError, ProtocolError) as e:
            msg = None
            if isinstance(e, socket.timeout):
                _kill(proc)
                chan.close()
                raise EngineError(f"timed out waiting for {label} to load") from None
        if msg is None or msg.get("op") != "ready":
            chan.close()
            if msg is not None and msg.get("op") == "load_error":
                _reap(proc)
                raise EngineError(str(msg.get("error")), hint=msg.get("hint"))
            code = _reap(proc)
            raise EngineError(f"llama runner process has terminated: {_why(code, tail)}")
        info = msg["info"]
        runner = cls(proc, chan, RunnerInfo(**{k: info[k] for k in RunnerInfo.__dataclass_fields__
                                               if k in info}), options, label, tail)
        logger.info("runner %d serves %s (%d x %d tokens)", proc.pid, label, runner.info.n_seq,
                    runner.info.n_ctx)
        return runner

    # -- facts -------------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self.info.n_ctx

    @property
    def memory_size(self) -> int:
        return self.info.kv_bytes

    @property
    def alive(self) -> bool:
        return not self._dead

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- calls -------------------------------------------------------------------------------
    def _register(self, slot: Future[dict[str, Any]] | _Stream) -> int:
        with self._lock:
            if self._dead:
                raise RunnerCrashed()
            rid = next(self._ids)
            self._pending[rid] = slot
            return rid

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        fut: Future[dict[str, Any]] = Future()
        rid = self._register(fut)
        self._send({**message, "id": rid})
        reply = fut.result()
        if reply.get("op") == "error":
            raise RequestFailed(str(reply.get("error")), status=int(reply.get("status") or 500))
        return reply

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.chan.send(message)
        except OSError:
            self._died()
            raise RunnerCrashed() from None

    def tokenize(self, text: str, *, special: bool = True, add_bos: bool = True) -> list[int]:
        """Token ids of ``text`` (blocking: call from a worker thread)."""
        reply = self._call({"op": "tokenize", "text": text, "add_bos": add_bos,
                            "special": special})
        return list(reply["tokens"])

    def embed(self, texts: Sequence[str], *, truncate: bool = True, normalize: bool = True
              ) -> tuple[list[list[float]], int]:
        """One vector per text and the tokens read (blocking)."""
        reply = self._call({"op": "embed", "texts": list(texts), "truncate": truncate,
                            "normalize": normalize})
        return reply["vectors"], int(reply["count"])

    async def generate(self, prompt: str | Sequence[int], options: dict[str, Any], *,
                       fmt: Any = None, logprobs: bool = False, top_logprobs: int = 0,
                       images: Sequence[str] | None = None) -> Generation:
        """Send a generation and wait until the runner accepted it (prompt tokenized, sampler
        built): a bad ``format`` or context fails here, before any answer is sent."""
        stream = _Stream(asyncio.get_running_loop())
        rid = self._register(stream)
        self._send({"op": "generate", "id": rid,
                    "prompt": prompt if isinstance(prompt, str) else list(prompt),
                    "options": options, "format": fmt, "logprobs": logprobs,
                    "top_logprobs": top_logprobs, "images": list(images or ())})
        gen = Generation(self, rid, stream)
        try:
            await gen.started()
        except BaseException:
            gen.cancel()
            raise
        return gen

    def cancel(self, rid: int) -> None:
        try:
            self.chan.send({"op": "cancel", "id": rid})
        except OSError:
            pass

    # -- the reader --------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            while True:
                msg = self.chan.recv()
                if msg is None:
                    break
                rid = msg.get("id")
                with self._lock:
                    slot = self._pending.get(rid) if rid is not None else None
                    if rid is not None and (isinstance(slot, Future) or (
                            msg["op"] in ("done", "error") and isinstance(slot, _Stream))):
                        self._pending.pop(rid, None)
                if isinstance(slot, Future):
                    slot.set_result(msg)
                elif isinstance(slot, _Stream):
                    slot.put(msg)
        except (OSError, ProtocolError, ValueError) as e:
            if not self._closing:
                logger.warning("runner %d: %s", self.proc.pid, e)
        self._died()

    def _died(self) -> None:
        with self._lock:
            if self._dead:
                return
            self._dead = True
            pending, self._pending = self._pending, {}
        code = _reap(self.proc, wait=2.0)
        if not self._closing:
            logger.error("runner %d for %s stopped unexpectedly: %s", self.proc.pid, self.name,
                         _why(code, self._tail))
        for slot in pending.values():
            if isinstance(slot, Future):
                slot.set_exception(RunnerCrashed())
            else:
                slot.put(RunnerCrashed())
        self.chan.close()
        if self.on_exit is not None and not self._closing:
            self.on_exit(self)

    # -- stopping ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the process (closing the socket ends it; SIGKILL if it lingers)."""
        if self._closing:
            return
        self._closing = True
        self.chan.close()
        _reap(self.proc, wait=5.0)


class Generation:
    """One generation in flight: iterate :meth:`chunks`; :meth:`cancel` stops it."""

    def __init__(self, runner: RunnerProcess, rid: int, stream: _Stream) -> None:
        self.runner = runner
        self.id = rid
        self._stream = stream
        self.prompt_tokens = 0
        self._finished = False
        self._cancelled = False

    async def _next(self) -> dict[str, Any]:
        item = await self._stream.queue.get()
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        if item["op"] == "error":
            self._finished = True
            raise RequestFailed(str(item.get("error")), status=int(item.get("status") or 500))
        return item

    async def started(self) -> None:
        msg = await self._next()
        if msg["op"] != "started":
            raise EngineError(f"runner answered {msg['op']} before starting")
        self.prompt_tokens = int(msg.get("prompt_tokens") or 0)

    async def chunks(self) -> AsyncIterator[Chunk]:
        try:
            while True:
                msg = await self._next()
                if msg["op"] == "chunk":
                    yield Chunk(msg.get("text", ""), logprobs=msg.get("logprobs"))
                elif msg["op"] == "done":
                    self._finished = True
                    yield Chunk(
                        msg.get("text", ""), done=True, done_reason=msg.get("done_reason"),
                        prompt_eval_count=int(msg.get("prompt_eval_count", 0)),
                        prompt_eval_duration=int(msg.get("prompt_eval_duration", 0)),
                        eval_count=int(msg.get("eval_count", 0)),
                        eval_duration=int(msg.get("eval_duration", 0)),
                        context=list(msg.get("context") or ()))
                    return
        finally:
            if not self._finished:
                self.cancel()

    def cancel(self) -> None:
        """Stop at the runner's next step. The runner still answers ``done`` (reason
        ``cancel``), which ends :meth:`chunks` for a reader still iterating."""
        if self._cancelled or self._finished:
            return
        self._cancelled = True
        self.runner.cancel(self.id)


def _relay_stderr(proc: subprocess.Popen[bytes], label: str, tail: collections.deque[str]) -> None:
    """Runner stderr goes to the server log, line by line; the last lines explain a crash."""
    assert proc.stderr is not None
    log = logging.getLogger("runtime.serve.runner")
    for raw in proc.stderr:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if not line:
            continue
        tail.append(line)
        level = logging.DEBUG
        if re.search(r"error|fail|assert|abort|warn|segmentation", line, re.I):
            level = logging.WARNING
        elif line.startswith("INFO "):
            level = logging.INFO
        log.log(level, "[%s %d] %s", label, proc.pid, line)


def _reap(proc: subprocess.Popen[bytes], wait: float = 5.0) -> int | None:
    try:
        return proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        _kill(proc)
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.send_signal(signal.SIGKILL)
    except OSError:
        pass


_PATH = re.compile(r"(/[^\s:'\"()]+)+")


def _why(code: int | None, tail: collections.deque[str]) -> str:
    """How a runner ended, with the last error-looking line it wrote (paths removed)."""
    if code is None:
        status = "did not exit"
    elif code < 0:
        try:
            status = f"signal: {signal.Signals(-code).name.lower().removeprefix('sig')}"
        except ValueError:
            status = f"signal {-code}"
    else:
        status = f"exit status {code}"
    for line in reversed(tail):
        if re.search(r"error|assert|abort|fail", line, re.I):
            return f"{status}: {_PATH.sub('…', line)[:300]}"
    return status
