"""``llmcrate serve``, ``ps`` and ``stop``: start the API server, see and unload loaded models."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any

import click

from runtime.cli.backend import open_backend
from runtime.config import load_settings
from runtime.format import human_bytes, human_time, table

_SERVE_ENV = """\b
Environment Variables (LLMCRATE_<NAME> overrides OLLAMA_<NAME>):
  OLLAMA_HOST               IP address and port to listen on (default 127.0.0.1:11434)
  OLLAMA_MODELS             The path to the models directory (default ~/.ollama/models)
  OLLAMA_KEEP_ALIVE         How long models stay loaded in memory (default 5m; negative: forever)
  OLLAMA_NUM_PARALLEL       Requests each model answers at once (default 1)
  OLLAMA_MAX_QUEUE          Requests that may wait; more are refused with 503 (default 512)
  OLLAMA_MAX_LOADED_MODELS  Models loaded at once; least recently used unloads first (default 3)
  OLLAMA_CONTEXT_LENGTH     Context length when a request sets none (default 4096)
  OLLAMA_ORIGINS            Extra allowed CORS origins, comma separated
  OLLAMA_LOAD_TIMEOUT       How long a model may take to load (default 5m)
  OLLAMA_DEBUG              Log debug information
  LLMCRATE_REGISTRY         Also serve the store read-only as a registry under /v2/ (default off)
"""


@click.command(epilog=_SERVE_ENV)
@click.option("--registry", is_flag=True,
              help="Also serve the store read-only over the registry protocol (/v2/), so other "
                   "hosts can `pull --insecure HOST:PORT/NS/MODEL:TAG` from this one.")
def serve(registry: bool) -> None:
    """Start the llmcrate server (Ollama-compatible API at OLLAMA_HOST)."""
    from runtime.api.server_main import serve as serve_forever

    serve_forever(load_settings(registry=True) if registry else load_settings())


@click.command()
def ps() -> None:
    """List running models."""
    with open_backend(load_settings()) as backend:
        models = backend.ps()
    rows = [[m.get("name") or m.get("model", ""), _short_digest(m.get("digest", "")),
             human_bytes(int(m.get("size") or 0)), _processor(m),
             str(m.get("context_length") or ""), _until(m.get("expires_at"))] for m in models]
    click.echo(table(rows, header=["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]))


@click.command()
@click.argument("model")
def stop(model: str) -> None:
    """Stop a running model (unload it from memory now)."""
    with open_backend(load_settings()) as backend:
        backend.stop(model)


# -- formatting --------------------------------------------------------------------------------

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
    """UNTIL as ``ollama ps`` words it: "4 minutes from now", "Forever", "Stopping..."."""
    when = parse_timestamp(expires_at if isinstance(expires_at, str) else None)
    if when is None:
        return "Never"
    ts, now = when.timestamp(), time.time()
    if ts <= now:
        return "Stopping..."
    if ts - now > 20 * 365 * 24 * 3600:
        return "Forever"
    return human_time(ts, "Never", now=now)


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
