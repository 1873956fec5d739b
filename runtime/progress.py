"""The one tqdm wrapper: render Ollama ``/api/pull``-style progress events like ``ollama pull``.

    pulling manifest
    pulling 065d7a8005f2: 100%|██████████| 2.15G/2.15G [00:03<00:00, 640MB/s]
    verifying sha256 digest
    writing manifest
    success

Bars are drawn only when the stream is a terminal; otherwise (logs, pipes, CI) only the status
lines are written, once each, so output stays small and greppable.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    # tqdm is imported when a bar is drawn: ProgressEvent must import on the target's bare python3
    # (install.sh runs runtime.bundle from the wheel with no site-packages)
    from tqdm import tqdm


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report from long work (pull, create, push, bundle verify), as Ollama's
    ``ProgressResponse``: a status line, and for byte transfers the layer digest with totals."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``/api/pull`` NDJSON object: fields that are unset are left out (Go's omitempty)."""
        out: dict[str, Any] = {"status": self.status}
        for key in ("digest", "total", "completed"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ProgressEvent:
        """An event from an ``/api/pull``-style NDJSON object (what the server streams)."""
        def number(key: str) -> int | None:
            value = obj.get(key)
            return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        digest = obj.get("digest")
        return cls(str(obj.get("status") or ""), digest=str(digest) if digest else None,
                   total=number("total"), completed=number("completed"))


ProgressCallback = Callable[[ProgressEvent], None]
"""What every library function that reports progress takes as ``progress=``."""


class StatusPrinter:
    """A :data:`ProgressCallback` that prints events: status lines, and a bar per digest."""

    def __init__(self, *, stream: IO[str] | None = None, bars: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.bars_on = isatty() if bars is None else bars
        self._bars: dict[str, tqdm[Any]] = {}
        self._last_status: str | None = None

    def __call__(self, event: ProgressEvent) -> None:
        status = event.status
        if event.digest and event.total is not None:
            self._bar(status, event.digest, event.total, event.completed or 0)
            return
        if status and status != self._last_status:
            self._last_status = status
            self._close_bars()
            self.stream.write(status + "\n")
            self.stream.flush()

    def _bar(self, status: str, digest: str, total: int, completed: int) -> None:
        bar = self._bars.get(digest)
        if bar is None:
            from tqdm import tqdm

            if not self.bars_on:
                # one line per layer, when it starts, keeps logs readable
                self.stream.write(status + "\n")
                self.stream.flush()
            bar = tqdm(total=total, desc=status, unit="B", unit_scale=True, unit_divisor=1000,
                       file=self.stream, disable=not self.bars_on, leave=True, dynamic_ncols=True,
                       initial=0, mininterval=0.1)
            self._bars[digest] = bar
        delta = completed - bar.n
        if delta:
            bar.update(delta)

    def _close_bars(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def close(self) -> None:
        self._close_bars()
