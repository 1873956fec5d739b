"""``llmcrate serve``, ``ps`` and ``stop``: start the API server, see and unload loaded models.

Also the small formatters the model tables share (``ollama ps`` / ``ollama list`` style):
:func:`human_bytes`, :func:`human_time`, :func:`render_table`.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Sequence

import click

from ..client import Client
from ..config import load_settings


@click.command()
def serve() -> None:
    """Start the llmcrate server (Ollama-compatible API at OLLAMA_HOST)."""
    from ..server_main import serve as serve_forever

    serve_forever(load_settings())


@click.command()
def ps() -> None:
    """List running models."""
    with Client(load_settings()) as client:
        models = client.ps()
    rows = [[m.get("name") or m.get("model", ""), _short_digest(m.get("digest", "")),
             human_bytes(int(m.get("size") or 0)), _processor(m),
             str(m.get("context_length") or ""), _until(m.get("expires_at"))] for m in models]
    click.echo(render_table(["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], rows))


@click.command()
@click.argument("model")
def stop(model: str) -> None:
    """Stop a running model (unload it from memory now)."""
    with Client(load_settings()) as client:
        client.stop(model)


# -- formatting --------------------------------------------------------------------------------

def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, padding: str = "    ") -> str:
    """Left-aligned columns separated by ``padding``, no borders: the layout of ``ollama ps``."""
    table = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in table) for i in range(len(header))]
    lines = [padding.join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in table]
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    """Ollama's size format: binary multiples named KB/MB/GB/TB; "4.7 GB", "397 MB", "12 B"."""
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            value = n / size
            if value >= 10 or value == math.trunc(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{n} B"


def _human_duration(seconds: float) -> str:
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
    return f"{hours // 24 // 365} years"


def human_time(when: datetime | None, *, zero: str = "Never", now: datetime | None = None) -> str:
    """"4 minutes from now", "2 hours ago", "Forever" (over 20 years ahead), ``zero`` for no time."""
    if when is None:
        return zero
    now = now or datetime.now(timezone.utc)
    delta = (now - when).total_seconds()
    if delta < -20 * 365 * 24 * 3600:
        return "Forever"
    if delta < 0:
        return _human_duration(-delta) + " from now"
    return _human_duration(delta) + " ago"


_FRACTION = re.compile(r"\.(\d+)")


def parse_timestamp(text: str | None) -> datetime | None:
    """An RFC 3339 time as the API writes it (any fraction digits, ``Z``); None for Go's zero time."""
    if not text:
        return None
    s = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    s = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], s, count=1)
    try:
        when = datetime.fromisoformat(s)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if when.year <= 1:
        return None
    return when


def _until(expires_at: Any) -> str:
    when = parse_timestamp(expires_at if isinstance(expires_at, str) else None)
    if when is not None and when <= datetime.now(timezone.utc):
        return "Stopping..."
    return human_time(when, zero="Never")


def _processor(m: dict[str, Any]) -> str:
    size, vram = int(m.get("size") or 0), int(m.get("size_vram") or 0)
    if vram == 0:
        return "100% CPU"
    if vram == size:
        return "100% GPU"
    if vram > size or size == 0:
        return "Unknown"
    cpu = round((size - vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def _short_digest(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]
