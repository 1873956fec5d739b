"""Settings from the environment, with Ollama's names, meanings and defaults.

``LLMCRATE_<NAME>`` overrides ``OLLAMA_<NAME>``. Settings are built once by
:func:`load_settings` and passed down; nothing reads the environment at import.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import ConfigError

DEFAULT_PORT = 11434
#: Ollama's default origins, always allowed in addition to OLLAMA_ORIGINS.
DEFAULT_ORIGINS = (
    "http://localhost", "https://localhost", "http://localhost:*", "https://localhost:*",
    "http://127.0.0.1", "https://127.0.0.1", "http://127.0.0.1:*", "https://127.0.0.1:*",
    "http://0.0.0.0", "https://0.0.0.0", "http://0.0.0.0:*", "https://0.0.0.0:*",
    "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object, *, key: str = "keep_alive") -> float:
    """Parse an Ollama duration into seconds; ``math.inf`` means forever.

    Accepts Go duration strings (``"5m"``, ``"1h30m"``, ``"-1s"``), bare numbers (seconds) and
    numeric strings. Any negative value means "never expire", as in Ollama.
    """
    if isinstance(value, bool):
        raise ConfigError(key, f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        s = value.strip()
        if not s:
            raise ConfigError(key, "empty duration")
        try:
            seconds = float(s)
        except ValueError:
            sign = -1.0 if s.startswith("-") else 1.0
            body = s.lstrip("+-")
            if body == "0":
                return 0.0
            pos, total = 0, 0.0
            for m in _DURATION_PART.finditer(body):
                if m.start() != pos:
                    break
                total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
                pos = m.end()
            if pos != len(body) or pos == 0:
                raise ConfigError(key, f'invalid duration "{value}" (use e.g. 5m, 1h, 30s, -1)') from None
            seconds = sign * total
    else:
        raise ConfigError(key, f"invalid duration {value!r}")
    return math.inf if seconds < 0 else seconds


@dataclass(frozen=True)
class HostAddr:
    scheme: str = "http"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{h}:{self.port}"

    def __str__(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}"


def parse_host(value: str | None) -> HostAddr:
    """Parse ``OLLAMA_HOST`` like Ollama: ``[scheme://]host[:port]``, ``:port`` and ``host`` alone."""
    s = (value or "").strip()
    if not s:
        return HostAddr()
    default_port = DEFAULT_PORT
    if "://" in s:
        scheme, rest = s.split("://", 1)
        scheme = scheme.lower()
        if scheme == "http":
            default_port = 80
        elif scheme == "https":
            default_port = 443
        else:
            raise ConfigError("OLLAMA_HOST", f'unsupported scheme "{scheme}"')
    else:
        scheme, rest = "http", s
    rest = rest.split("/", 1)[0]
    host, port = rest, default_port
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise ConfigError("OLLAMA_HOST", f'invalid address "{value}"')
        host = rest[1:end]
        tail = rest[end + 1:]
        if tail.startswith(":") and tail[1:]:
            port = _port(tail[1:], value)
    elif rest.count(":") == 1:
        h, p = rest.split(":")
        host = h
        if p:
            port = _port(p, value)
    elif ":" in rest:  # more than one colon: only a bare IPv6 address may look like that
        import ipaddress

        try:
            ipaddress.IPv6Address(rest)
        except ValueError:
            raise ConfigError("OLLAMA_HOST", f'invalid address "{value}" (use host:port, '
                                             '[ipv6]:port or a URL)') from None
    if not host:
        host = "127.0.0.1" if ":" not in rest or rest.startswith(":") else host
    return HostAddr(scheme=scheme, host=host, port=port)


def _port(text: str, whole: str | None) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError("OLLAMA_HOST", f'invalid port in "{whole}"') from None
    if not 0 <= port <= 65535:
        raise ConfigError("OLLAMA_HOST", f'port out of range in "{whole}"')
    return port


def default_models_dir(env: Mapping[str, str]) -> Path:
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".ollama" / "models"


@dataclass(frozen=True)
class Settings:
    host: HostAddr = field(default_factory=HostAddr)
    models_dir: Path = field(default_factory=lambda: default_models_dir(os.environ))
    keep_alive: float = 300.0          # seconds; math.inf = never unload
    num_parallel: int = 1
    max_queue: int = 512
    max_loaded_models: int = 3         # Ollama: 3 × GPUs, or 3 on CPU
    origins: tuple[str, ...] = ()
    debug: bool = False
    context_length: int = 4096
    runtime: str | None = None         # LLMCRATE_RUNTIME: cpu|cuda|rocm (start.sh)
    load_timeout: float = 300.0
    noprune: bool = False
    #: LLMCRATE_NUM_THREAD: threads per runner when a request sets no num_thread
    #: (0: the physical cores, as Ollama and llama-server default to)
    num_thread: int = 0
    #: OLLAMA_FLASH_ATTENTION: off by default, as in Ollama (and llama-cpp-python)
    flash_attention: bool = False
    registry: bool = False             # LLMCRATE_REGISTRY: serve the store over /v2/ (read-only)
    #: LLMCRATE_IMAGE_ENCODE: where a vision runner runs its projector. "thread": on an encoder
    #: thread, so the other sequences keep generating meanwhile; "inline": between two decode
    #: steps (every sequence waits); "auto": a thread when the projector runs on a GPU, inline
    #: on CPU (docs/benchmarks.md: at the default thread count two CPU thread pools contend)
    image_encode: str = "auto"

    def __post_init__(self) -> None:
        if self.num_parallel < 1:
            raise ConfigError("OLLAMA_NUM_PARALLEL", "must be at least 1")
        if self.max_queue < 1:
            raise ConfigError("OLLAMA_MAX_QUEUE", "must be at least 1")
        if self.max_loaded_models < 1:
            raise ConfigError("OLLAMA_MAX_LOADED_MODELS", "must be at least 1")
        if self.num_thread < 0:
            raise ConfigError("LLMCRATE_NUM_THREAD", "must be 0 (all cores) or more")
        if self.context_length < 16:
            raise ConfigError("OLLAMA_CONTEXT_LENGTH", "must be at least 16")
        if self.image_encode not in ("auto", "thread", "inline"):
            raise ConfigError("LLMCRATE_IMAGE_ENCODE", f'"{self.image_encode}" is not auto, thread or inline')

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return tuple(self.origins) + DEFAULT_ORIGINS


def _get(env: Mapping[str, str], name: str) -> str | None:
    for key in (f"LLMCRATE_{name}", f"OLLAMA_{name}"):
        v = env.get(key)
        if v is not None and v.strip() != "":
            return v.strip()
    return None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    v = _get(env, name)
    if v is None:
        return default
    try:
        return int(v)
    except ValueError:
        raise ConfigError(f"OLLAMA_{name}", f'"{v}" is not a whole number') from None


def _bool(env: Mapping[str, str], name: str) -> bool:
    v = _get(env, name)
    return v is not None and v.lower() not in ("0", "false", "no", "off")


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``); keyword overrides win."""
    env = os.environ if env is None else env
    models = _get(env, "MODELS")
    origins = tuple(o.strip() for o in (_get(env, "ORIGINS") or "").split(",") if o.strip())
    keep_alive_raw = _get(env, "KEEP_ALIVE")
    max_loaded = _int(env, "MAX_LOADED_MODELS", 0) or 3
    values: dict[str, object] = {
        "host": parse_host(_get(env, "HOST")),
        "models_dir": Path(models).expanduser() if models else default_models_dir(env),
        "keep_alive": parse_duration(keep_alive_raw, key="OLLAMA_KEEP_ALIVE") if keep_alive_raw else 300.0,
        "num_parallel": _int(env, "NUM_PARALLEL", 0) or 1,
        "max_queue": _int(env, "MAX_QUEUE", 512),
        "max_loaded_models": max_loaded,
        "origins": origins,
        "debug": _bool(env, "DEBUG"),
        "context_length": _int(env, "CONTEXT_LENGTH", 4096),
        "runtime": _get(env, "RUNTIME"),
        "load_timeout": parse_duration(_get(env, "LOAD_TIMEOUT") or "5m", key="OLLAMA_LOAD_TIMEOUT"),
        "noprune": _bool(env, "NOPRUNE"),
        "num_thread": _int(env, "NUM_THREAD", 0),
        "flash_attention": _bool(env, "FLASH_ATTENTION"),
        "registry": _bool(env, "REGISTRY"),
        "image_encode": (_get(env, "IMAGE_ENCODE") or "auto").lower(),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
