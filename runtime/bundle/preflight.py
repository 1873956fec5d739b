"""Preflight: the target host checked against a bundle before anything is installed.

Architecture, glibc, the python3 that will run llmcrate, disk space for models and program, the
service port, and the CPU/GPU runtimes the bundle carries. Fatal failures stop install.sh; a GPU
that does not fit is a warning (llmcrate then runs on the CPU).
"""
from __future__ import annotations

import json
import platform
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.bundle.archive import read_bundle_json


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fatal: bool = True


def _glibc() -> tuple[int, ...]:
    lib, ver = platform.libc_ver()
    if lib != "glibc" or not ver:
        return ()
    return tuple(int(x) for x in ver.split(".")[:2])


def _free_bytes(path: Path) -> tuple[Path, int]:
    p = path
    while not p.exists():
        p = p.parent
    return p, shutil.disk_usage(p).free


def _same_fs(a: Path, b: Path) -> bool:
    def dev(p: Path) -> int:
        while not p.exists():
            p = p.parent
        return p.stat().st_dev
    return dev(a) == dev(b)


def _port_check(host: str, port: int) -> Check:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return Check("port", True, f"{host}:{port} is free")
        except OSError as e:
            reason = e.strerror or str(e)
    try:
        import urllib.request
        h = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::"):
            h = "127.0.0.1"
        with urllib.request.urlopen(f"http://{h}:{port}/api/version", timeout=3) as r:
            if "version" in json.loads(r.read()):
                return Check("port", True, f"{host}:{port} is served by llmcrate/ollama (will be replaced)")
    except (OSError, ValueError, KeyError, TypeError):  # no llmcrate answering: someone else holds the port
        pass
    return Check("port", False, f"{host}:{port} is in use ({reason})")


def preflight(bundle: Path, *, prefix: Path, models_dir: Path, host: str, port: int,
              python_version: tuple[int, int] | None = None, machine: str | None = None,
              hw: Any = None) -> list[Check]:
    """Checks the target host against a bundle before installing it; fatal failures stop install."""
    from runtime.serve import hardware
    meta = read_bundle_json(bundle)
    checks: list[Check] = []
    machine = machine or platform.machine()
    arch = meta.arch or "x86_64"
    checks.append(Check("architecture", machine == arch,
                        f"{machine}" + ("" if machine == arch else f", but the bundle is for {arch}")))
    glibc = _glibc()
    need = tuple(meta.glibc_min or ())
    if glibc:
        ok = not need or glibc >= tuple(need)
        checks.append(Check("glibc", ok, ".".join(map(str, glibc)) + (
            "" if ok else f", bundle needs {'.'.join(map(str, need))} or newer")))
    else:
        checks.append(Check("glibc", False, "not a glibc system (musl/Alpine is not supported)"))
    pyv = python_version or sys.version_info[:2]
    tags = [str(t) for t in meta.python or []]
    pv = f"{pyv[0]}.{pyv[1]}"
    checks.append(Check("python3", pv in tags, f"{sys.executable} {pv}" + (
        "" if pv in tags else f"; the bundle carries wheels for {', '.join(tags)}")))
    files = meta.files
    runtimes = meta.runtimes or {}
    models_bytes = sum(e.size for r, e in files.items() if r.startswith("models/blobs/")
                       and not (models_dir / "blobs" / r.rsplit("/", 1)[1]).exists())
    if _same_fs(bundle, models_dir):
        models_bytes = 0  # moved by rename
    other = sum(e.size for r, e in files.items() if r.startswith(("wheels/", "runtimes/")))
    need_prefix = 3 * other  # unpacked wheels + runtimes, with room for the previous install
    for label, where, needed in (("disk (models)", models_dir, models_bytes), ("disk (prefix)", prefix, need_prefix)):
        at, free = _free_bytes(where)
        if _same_fs(models_dir, prefix) and label == "disk (prefix)":
            needed += models_bytes
        checks.append(Check(label, free >= needed,
                            f"{free / 1e9:.1f} GB free in {at}, {needed / 1e9:.2f} GB needed"))
    checks.append(_port_check(host, port))
    host_probe = hw or hardware.Host()
    cpu = hardware.get_backend("cpu").probe(host_probe, runtime=runtimes.get("cpu"))
    portable = runtimes.get("cpu", {}).get("portable") is not False
    checks.append(Check("cpu", cpu.ok, (cpu.reason + " " + " ".join(cpu.info.get("simd", [])))  # type: ignore[arg-type]
                        .strip() + ("" if portable else " (cpu runtime built for the build host's CPU)")))
    for name, facts in sorted(runtimes.items()):
        fam = hardware.family_of(name)
        if fam == "cpu" or fam not in hardware.BACKENDS:
            continue
        p = hardware.get_backend(fam).probe(host_probe, runtime=facts)
        checks.append(Check(name, p.ok, p.reason + ("" if p.ok else " -> will use cpu"), fatal=False))
    return checks
