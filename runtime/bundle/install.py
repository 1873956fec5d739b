"""The small steps ``install.sh`` runs besides verify and register: which pip wheel to bootstrap,
``install.conf`` and the systemd unit written atomically, and the smoke test of the new server."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from runtime.bundle.archive import read_bundle_json
from runtime.errors import BundleError
from runtime.fileio import atomic_write


def pip_wheel_for(bundle: Path, python: str) -> str:
    """File name of the bundled pip wheel that runs on ``python`` ("3.11")."""
    meta = read_bundle_json(bundle)
    name = (meta.pip or {}).get(python)
    if not name:
        raise BundleError(f"the bundle carries no pip for Python {python}")
    return str(name)


def write_conf(path: Path, values: dict[str, str]) -> None:
    """Write a sh-sourceable KEY='value' file (install.conf) atomically."""
    for k in values:
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", k):
            raise BundleError(f"bad variable name {k!r}")
    atomic_write(path, "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()).encode())


def substitute(src: Path, dst: Path, values: dict[str, str]) -> None:
    """Copy ``src`` to ``dst`` atomically with every ``@KEY@`` replaced; refuses leftovers."""
    text = src.read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise BundleError(f"{src.name}: no value for {', '.join(sorted(set(left)))}")
    atomic_write(dst, text.encode())


def smoke_test(host: str, model: str, *, timeout: float = 120.0) -> str:
    """Wait for the server at ``host``, then ask ``model`` for one token; returns the version."""
    import time
    import urllib.error
    import urllib.request

    from runtime.config import parse_host
    addr = parse_host(host)
    h = "127.0.0.1" if addr.host in ("0.0.0.0", "") else ("::1" if addr.host == "::" else addr.host)
    base = f"http://[{h}]:{addr.port}" if ":" in h else f"http://{h}:{addr.port}"
    deadline = time.monotonic() + timeout
    version = ""
    while True:
        try:
            with urllib.request.urlopen(base + "/api/version", timeout=5) as r:
                # llmcrate's own version; the body holds the Ollama API version it implements
                version = r.headers.get("X-Llmcrate-Version") or json.loads(r.read())["version"]
            break
        except (OSError, ValueError, KeyError) as e:
            if time.monotonic() > deadline:
                raise BundleError(f"server at {base} did not answer /api/version: {e}") from e
            time.sleep(1)
    if model:
        body = json.dumps({"model": model, "prompt": "Hello", "stream": False,
                           "options": {"num_predict": 1}}).encode()
        req = urllib.request.Request(base + "/api/generate", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=max(5.0, deadline - time.monotonic())) as r:
                json.loads(r.read())["response"]
        except (OSError, ValueError, KeyError) as e:
            raise BundleError(f"generation with {model} failed: {e}") from e
    return str(version)
