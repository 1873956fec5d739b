"""What an llmcrate host has now; prints one JSON object (stdlib only, Python 3.9+).

Usage: probe.py LIB STAGE TOP PIDFILE  (run by the llmcrate role's first task)
"""
import json
import os
import shutil
import sys


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def free_bytes(path: str) -> int:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def running(pid_text: str) -> bool:
    """Whether the PID file names a live llmcrate server (not a recycled PID)."""
    if not pid_text.isdigit():
        return False
    try:
        with open(f"/proc/{pid_text}/cmdline", "rb") as f:
            return b"runtime.cli" in f.read()
    except OSError:
        return False


def main() -> None:
    lib, stage, top, pidfile = sys.argv[1:5]
    try:
        with open(os.path.join(lib, "bundle.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        meta = {}
    pid = read(pidfile)
    print(json.dumps({  # noqa: T201 (the probe's result, read by the role)
        "installed_sha256": read(os.path.join(lib, "fleet-bundle.sha256")),
        "installed_version": meta.get("version", ""),
        "installed_name": meta.get("name", ""),
        "staged_sha256": read(os.path.join(stage, top + ".sha256")),
        "free": free_bytes(stage),
        "running": running(pid),
        "pid": int(pid) if pid.isdigit() else None,
    }))


main()
