"""Compile and render untrusted Jinja chat templates in a child process, bounded in time and memory.

A template from a model file can ask for work no in-process check fully foresees (one C-level
string operation of gigabytes, a compile-time fold, a pathological regex). So it runs in a
child Python whose address space is capped (:data:`MEMORY_LIMIT`, ``RLIMIT_AS``) and which is
killed when one compile + render passes its deadline. Children are reused (a small idle pool),
so a render costs one pipe round trip; a killed or crashed child is replaced on the next call.

Protocol on the child's stdin/stdout: 4-byte big-endian length, then a pickled request
``(source, ctx, max_range)`` (parent -> child, trusted) or a JSON reply ``{"ok": text}`` /
``{"error": msg, "pos": pos, "fatal": bool}`` (child -> parent).
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any

from runtime.errors import TemplateError

logger = logging.getLogger(__name__)

MEMORY_LIMIT = 1 << 30        # bytes of address space of one child (RLIMIT_AS)
MAX_IDLE = 2                  # children kept for reuse
_HEADER = struct.Struct(">I")
_START_TIMEOUT_S = 120.0      # importing jinja2 on a loaded machine; not part of any deadline


class _ChildGone(Exception):
    pass


def _read_frame(stream: IO[bytes]) -> bytes | None:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (n,) = _HEADER.unpack(head)
    data = stream.read(n)
    return data if len(data) == n else None


def _write_frame(stream: IO[bytes], data: bytes) -> None:
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


# ---------------------------------------------------------------------------------------- child

def main() -> None:
    """The child's loop: one request in, one reply out, until stdin closes."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    from runtime.prompt.jinja import render_in_process

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr           # nothing else may write into the reply stream
    _write_frame(out, b"ready")
    while True:
        req = _read_frame(inp)
        if req is None:
            return
        fatal = False
        try:
            source, ctx, max_range = pickle.loads(req)
            reply: dict[str, Any] = {"ok": render_in_process(source, ctx, max_range=max_range)}
        except TemplateError as e:
            reply = {"error": e.msg, "pos": e.pos}
        except MemoryError:
            fatal = True
            reply = {"error": f"chat template: needs more than {MEMORY_LIMIT >> 20} MiB of memory"}
        except Exception as e:  # a bug of ours, not the template's: report it, keep serving
            logger.exception("jinja worker failed")
            reply = {"error": f"chat template: internal error: {type(e).__name__}: {e}"}
        reply["fatal"] = fatal
        _write_frame(out, json.dumps(reply).encode())
        if fatal:
            return


# --------------------------------------------------------------------------------------- parent

class _Child:
    def __init__(self) -> None:
        env = dict(os.environ)
        # the child imports runtime from wherever this process did (pip --target, -e, PYTHONPATH)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        flags = ["-s"] if sys.flags.no_user_site else []
        self.proc = subprocess.Popen(
            [sys.executable, *flags, "-c", "from runtime.prompt.jinja_worker import main; main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        if self._reply(_START_TIMEOUT_S) != b"ready":
            self.kill()
            raise TemplateError("chat template: the template renderer did not start")

    def _reply(self, timeout_s: float) -> bytes | None:
        """The next frame, or None when the child exits or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        fd = self.stdout.fileno()
        buf = b""
        need = _HEADER.size
        header_done = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, need - len(buf))
            if not chunk:
                raise _ChildGone()
            buf += chunk
            if len(buf) < need:
                continue
            if header_done:
                return buf
            (need,) = _HEADER.unpack(buf)
            buf, header_done = b"", True
            if need == 0:
                return b""

    def render(self, payload: bytes, deadline_s: float) -> dict[str, Any] | None:
        """The child's reply; None when the deadline passed (the child is then killed)."""
        try:
            _write_frame(self.stdin, payload)
        except (BrokenPipeError, OSError) as e:
            raise _ChildGone() from e
        raw = self._reply(deadline_s)
        if raw is None:
            self.kill()
            return None
        reply: dict[str, Any] = json.loads(raw)
        return reply

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.stdin, self.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _Pool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Child] = []

    def take(self) -> _Child:
        with self.lock:
            while self.idle:
                child = self.idle.pop()
                if child.alive():
                    return child
                child.kill()
        return _Child()

    def give_back(self, child: _Child) -> None:
        with self.lock:
            if len(self.idle) < MAX_IDLE and child.alive():
                self.idle.append(child)
                return
        child.kill()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for child in idle:
            child.kill()


_pool = _Pool()
atexit.register(_pool.close)


def render_in_worker(source: str, ctx: dict[str, Any], *, deadline_s: float,
                     max_range: int) -> str:
    """Compile and render ``source`` with ``ctx`` in a bounded child. Raises TemplateError.

    Args:
        source: the Jinja template text (untrusted).
        ctx: the render variables (plain data).
        deadline_s: wall-clock limit of the compile + render; the child is killed after it.
        max_range: items ``range()`` may produce in the whole render.
    """
    try:
        payload = pickle.dumps((source, ctx, max_range), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise TemplateError(f"chat template: the request holds a value it cannot be given: {e}") \
            from None
    child = _pool.take()
    try:
        reply = child.render(payload, deadline_s)
    except _ChildGone:
        code = child.proc.poll()
        child.kill()
        raise TemplateError(f"chat template: the renderer exited (status {code})") from None
    if reply is None:
        raise TemplateError(f"chat template: rendering took longer than {deadline_s:g}s")
    if reply.get("fatal"):
        child.kill()
    else:
        _pool.give_back(child)
    if "error" in reply:
        raise TemplateError(reply["error"], pos=reply.get("pos"))
    text: str = reply["ok"]
    return text
