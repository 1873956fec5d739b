"""Shared plumbing for the fake servers: a threaded HTTP/1.1 server and a file sender that
honours Range requests and the fault switches (slow stream, dropped connection, wrong bytes,
lying Content-Length)."""
from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class RequestRecord:
    """One request a fake server answered (``sent`` counts body bytes actually written)."""

    server: str
    method: str
    path: str
    status: int
    range: str | None = None
    sent: int = 0
    authorization: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    client_port: int = 0                 # tells connections apart (one port per connection)
    stalled: bool = False                # went silent (Faults.stall_after_bytes) ...
    stall_over: bool = False             # ... and came back after stall_seconds
    started: float = 0.0                 # time.monotonic() when the request line came ...
    ended: float = 0.0                   # ... and when the answer (body included) was sent


@dataclass
class Faults:
    """Switches for a blob stream. Each can be changed while the server runs."""

    slow: int | None = None              # bytes per second
    drop_after_bytes: int | None = None  # close the connection after this many body bytes
    drop_times: int | None = None        # how many responses drop (None = every one)
    wrong_digest: bool = False           # flip one byte of every body
    lie_content_length: int = 0          # add this to the Content-Length header (then close)
    stall_after_bytes: int | None = None # go silent after this many body bytes ...
    stall_seconds: float = 0.0           # ... for this long (then carry on)
    stall_times: int | None = None       # how many responses stall (None = every one)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], owner: Any, name: str) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.owner = owner
        self.name = name
        self._thread: threading.Thread | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # clients hang up mid-body on purpose (kill, stall, cancel)
        super().handle_error(request, client_address)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_inclusive)`` for a single ``bytes=`` range, or None for the whole file."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:  # suffix range: last N bytes
        start, end = max(0, size - int(m.group(2))), size - 1
    return start, min(end, size - 1)


class Handler(BaseHTTPRequestHandler):
    """Base handler: HTTP/1.1 keep-alive, quiet, with a request log on the owner."""

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def parse_request(self) -> bool:
        self._started = time.monotonic()
        return super().parse_request()

    # -- helpers ------------------------------------------------------------------------------
    def record(self, status: int, sent: int = 0) -> RequestRecord:
        rec = RequestRecord(server=self.server.name, method=self.command, path=self.path,
                            status=status, range=self.headers.get("Range"), sent=sent,
                            authorization=self.headers.get("Authorization"),
                            headers=dict(self.headers.items()),
                            client_port=int(self.client_address[1]),
                            started=getattr(self, "_started", 0.0), ended=time.monotonic())
        self.server.owner._log_request(rec)
        return rec

    def send_bytes(self, status: int, body: bytes, *, content_type: str = "application/json",
                   headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.record(status, 0 if self.command == "HEAD" else len(body))

    def send_file(self, path: Path, *, faults: Faults, headers: dict[str, str] | None = None,
                  content_type: str = "application/octet-stream",
                  on_drop: Callable[[], None] | None = None) -> None:
        """Send ``path`` (or the requested range of it) with the fault switches applied."""
        size = path.stat().st_size
        rng = parse_range(self.headers.get("Range"), size)
        if rng is not None and rng[0] >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.record(416)
            return
        start, end = rng if rng is not None else (0, size - 1)
        length = max(0, end - start + 1)
        status = 206 if rng is not None else 200
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length + faults.lie_content_length))
        if rng is not None:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            self.record(status)
            return
        rec = self.record(status)
        limit = length
        dropping = faults.drop_after_bytes is not None and (faults.drop_times is None or faults.drop_times > 0)
        if dropping:
            assert faults.drop_after_bytes is not None
            limit = min(length, faults.drop_after_bytes)
            if faults.drop_times is not None:
                faults.drop_times -= 1
        self.wfile.flush()
        try:
            with open(path, "rb") as f:
                if faults.slow or faults.wrong_digest or faults.stall_after_bytes is not None:
                    self._send_slow(f, start, limit, faults, rec)
                else:
                    self._send_fast(f, start, limit, rec)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
            return
        finally:
            rec.ended = time.monotonic()
        if limit < length or faults.lie_content_length:
            # drop the connection mid-body (or after a body shorter than announced)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if on_drop:
                on_drop()

    def _send_fast(self, f: Any, start: int, count: int, rec: RequestRecord) -> None:
        sock = self.connection.fileno()
        offset = start
        while count > 0:
            n = os.sendfile(sock, f.fileno(), offset, min(count, 8 << 20))
            if n == 0:
                break
            offset += n
            count -= n
            rec.sent += n

    def _send_slow(self, f: Any, start: int, count: int, faults: Faults, rec: RequestRecord) -> None:
        f.seek(start)
        chunk = 64 << 10
        if faults.slow:
            chunk = max(1024, min(chunk, faults.slow // 20))
        began = time.monotonic()
        sent = 0
        pos = start
        stall_at = faults.stall_after_bytes
        if stall_at is not None and faults.stall_times is not None:
            if faults.stall_times <= 0:
                stall_at = None
            else:
                faults.stall_times -= 1
        while sent < count:
            want = min(chunk, count - sent)
            if stall_at is not None and sent < stall_at:
                want = min(want, stall_at - sent)
            elif stall_at is not None and sent >= stall_at:
                rec.stalled = True
                time.sleep(faults.stall_seconds)
                rec.stall_over = True
                began += faults.stall_seconds
                stall_at = None
            data = f.read(want)
            if not data:
                break
            if faults.wrong_digest and pos == 0:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.wfile.write(data)
            self.wfile.flush()
            sent += len(data)
            pos += len(data)
            rec.sent += len(data)
            if faults.slow:
                ahead = sent / faults.slow - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
