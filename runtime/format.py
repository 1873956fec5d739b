"""Human-readable sizes and times, worded exactly like Ollama's ``format`` package."""
from __future__ import annotations

import datetime as _dt
import math
import time


def human_bytes(b: int) -> str:
    """``4.7 GB``, ``397 MB``, ``440 KB``, ``12 B`` (decimal units, as ``ollama list``)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):  # noqa: B007 (used after break)
        if b >= size:
            value = b / size
            break
    else:
        return f"{b} B"
    if value >= 10 or value == math.trunc(value):
        return f"{int(value)} {unit}"
    return f"{value:.1f} {unit}"


def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds // 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600 / 24 / 365)} years"


def human_time(ts: float | None, zero: str = "Never", *, now: float | None = None) -> str:
    """``2 days ago`` / ``4 minutes from now``; ``zero`` for a missing time."""
    if ts is None or ts <= 0:
        return zero
    now = time.time() if now is None else now
    if ts > now:
        return human_duration(ts - now) + " from now"
    return human_duration(now - ts) + " ago"


def table(rows: list[list[str]], *, header: list[str]) -> str:
    """Columns padded like Ollama's tables (three spaces between columns, no borders)."""
    allrows = [header, *rows]
    widths = [max(len(r[i]) for r in allrows) for i in range(len(header))]
    lines = []
    for r in allrows:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("    ".join(cells).rstrip())
    return "\n".join(lines)


def rfc3339_nano(when: float | int | _dt.datetime, *, ns: bool = False) -> str:
    """A time as Go's ``encoding/json`` writes a ``time.Time`` (RFC 3339 with nanoseconds,
    trailing zeros dropped), in the local zone; a zero offset is written ``Z``.

    Args:
        when: seconds since the epoch (float), nanoseconds (int with ``ns=True``), or a
            datetime (naive ones are taken as local time).
        ns: ``when`` is an int of nanoseconds since the epoch (``st_mtime_ns``).
    """
    if isinstance(when, _dt.datetime):
        aware = when if when.tzinfo is not None else when.astimezone()
        total = (int(aware.timestamp()) * 1_000_000_000) + aware.microsecond * 1000
    elif ns:
        total = int(when)
    else:
        total = round(when * 1_000_000) * 1000   # a float holds microseconds, not more
    secs, frac_ns = divmod(total, 1_000_000_000)
    local = _dt.datetime.fromtimestamp(secs).astimezone()
    offset = local.utcoffset() or _dt.timedelta(0)
    base = local.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{frac_ns:09d}".rstrip("0")
    if frac:
        base += "." + frac
    if not offset:
        return base + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hh, mm = divmod(abs(minutes), 60)
    return f"{base}{sign}{hh:02d}:{mm:02d}"
