"""The one tqdm wrapper: render Ollama ``/api/pull``-style status dicts like ``ollama pull``.

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
from typing import IO, Any

from tqdm import tqdm


class StatusPrinter:
    """Callable that consumes status dicts (``{"status", "digest", "total", "completed"}``)."""

    def __init__(self, *, stream: IO[str] | None = None, bars: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.bars_on = isatty() if bars is None else bars
        self._bars: dict[str, tqdm[Any]] = {}
        self._last_status: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        status = str(event.get("status", ""))
        digest = event.get("digest")
        total = event.get("total")
        if digest and isinstance(total, int):
            self._bar(status, str(digest), total, int(event.get("completed") or 0))
            return
        if status and status != self._last_status:
            self._last_status = status
            self._close_bars()
            self.stream.write(status + "\n")
            self.stream.flush()

    def _bar(self, status: str, digest: str, total: int, completed: int) -> None:
        bar = self._bars.get(digest)
        if bar is None:
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
