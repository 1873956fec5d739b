"""The framed protocol between the API server and a runner process.

One stream socket (a ``socketpair``) joins them. Each frame is a 4-byte big-endian length and
that many bytes of UTF-8 JSON: an object with an ``op`` and, for anything that belongs to a
request, the request's ``id``. Many requests are in flight at once; replies carry the id of
the request they answer and arrive in any order.

Server -> runner::

    {"op": "load", "spec": {...LoadSpec...}}            first frame, exactly once
    {"op": "tokenize", "id", "text", "add_bos", "special"}
    {"op": "generate", "id", "prompt" (str or [int]), "options" {...}, "format", "logprobs",
     "top_logprobs"}
    {"op": "cancel", "id"}                              stop a generation between two steps
    {"op": "embed", "id", "texts", "truncate", "normalize"}

Runner -> server::

    {"op": "ready", "info": {...}}  |  {"op": "load_error", "error"}
    {"op": "result", "id", ...}                          tokenize/embed answers
    {"op": "started", "id", "prompt_tokens"}             a generation was accepted
    {"op": "chunk", "id", "text", "logprobs"?}           generated text
    {"op": "done", "id", ...counters}                    the last message of a generation
    {"op": "error", "id", "status", "error"}             a request failed (the runner lives on)

Nothing here imports llama.cpp: the server side uses this module too.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
from typing import Any

_HEADER = struct.Struct(">I")
#: No single message comes near this; a larger length means a broken peer.
MAX_FRAME = 1 << 30


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _HEADER.pack(len(body)) + body


class Channel:
    """Frames over one socket: ``send`` from any thread, ``recv`` from one reader thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._rfile = sock.makefile("rb", buffering=1 << 16)

    def send(self, message: dict[str, Any]) -> None:
        data = encode(message)
        with self._send_lock:
            self.sock.sendall(data)

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None when the peer has closed the connection."""
        head = self._rfile.read(_HEADER.size)
        if not head:
            return None
        if len(head) < _HEADER.size:
            raise ProtocolError("truncated frame header")
        (size,) = _HEADER.unpack(head)
        if size > MAX_FRAME:
            raise ProtocolError(f"frame of {size} bytes")
        body = self._rfile.read(size)
        if len(body) < size:
            return None
        try:
            message = json.loads(body)
        except ValueError as e:
            raise ProtocolError(f"frame is not JSON: {e}") from None
        if not isinstance(message, dict) or "op" not in message:
            raise ProtocolError("frame without an op")
        return message

    def close(self) -> None:
        # shutdown first: it wakes a reader blocked in recv (closing the buffered file under
        # it would wait for that reader forever)
        for closer in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self._rfile.close,
                       self.sock.close):
            try:
                closer()
            except OSError:
                pass
