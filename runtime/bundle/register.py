"""Registering a bundle's models into the target store, with an undo journal, and recovering
what a killed ``install.sh`` left behind.

:func:`register_models` records every change in a journal before making it, so
:func:`rollback_models` can undo a half-done or finished registration (install.sh calls it when a
later step fails); :func:`recover_install` undoes, or finishes, the runs of install.sh processes
that were killed (STYLE.md habit 7: transactions with rollback).
"""
from __future__ import annotations

import base64
import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from runtime.fileio import TempMaker, atomic_copy, atomic_write, fsync_dir

logger = logging.getLogger(__name__)


def _move_file(src: Path, dst: Path) -> None:
    """Rename when on the same filesystem, else copy to a temp next to ``dst``, fsync, rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    atomic_copy(src, dst, make_temp=_partial_temp(dst))
    src.unlink()


def _partial_temp(dst: Path) -> TempMaker:
    """The copy's temp file, ``<blob>.llmcrate-partial-<pid>``: :func:`recover_install` removes the
    ones whose process is gone."""
    def make(directory: Path) -> tuple[int, Path]:
        tmp = directory / f"{dst.name}.llmcrate-partial-{os.getpid()}"
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), tmp
    return make


class _Journal:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, list[Any]] = {"blobs": [], "manifests": []}

    def save(self) -> None:
        if self.path is not None:
            atomic_write(self.path, json.dumps(self.data, indent=1).encode())


def register_models(src: Path, dst: Path, *, journal: Path | None = None) -> list[str]:
    """Move a bundle's models (Ollama layout under ``src``) into the store ``dst``.

    Blobs already in ``dst`` are kept (the bundle's copy stays behind); new ones are moved, not
    copied. Manifests are written atomically after their blobs. Every change is recorded in
    ``journal`` first, so :func:`rollback_models` can undo a half-done or finished registration.
    Returns the manifest paths (relative to ``dst``) that were written.
    """
    j = _Journal(journal)
    written: list[str] = []
    (dst / "blobs").mkdir(parents=True, exist_ok=True)
    (dst / "manifests").mkdir(parents=True, exist_ok=True)
    try:
        for blob in sorted((src / "blobs").iterdir()) if (src / "blobs").is_dir() else []:
            target = dst / "blobs" / blob.name
            if target.exists() and target.stat().st_size == blob.stat().st_size:
                continue
            j.data["blobs"].append([str(blob), str(target)])
            j.save()
            _move_file(blob, target)
        fsync_dir(dst / "blobs")
        for man in sorted(p for p in (src / "manifests").rglob("*") if p.is_file()):
            rel = man.relative_to(src)
            target = dst / rel
            new = man.read_bytes()
            old = target.read_bytes() if target.is_file() else None
            if old == new:
                continue
            j.data["manifests"].append([str(target), base64.b64encode(old).decode() if old else None])
            j.save()
            _test_kill_point("register")
            atomic_write(target, new)
            written.append(str(rel))
    except BaseException:
        rollback_models(journal_data=j.data)
        raise
    return written


def rollback_models(journal: Path | None = None, *, journal_data: dict[str, Any] | None = None) -> None:
    """Undo :func:`register_models`: old manifests back, new blobs moved back into the bundle."""
    data = journal_data if journal_data is not None else json.loads(Path(journal).read_text())  # type: ignore[arg-type]
    for target, old in reversed(data.get("manifests", [])):
        t = Path(target)
        if old is None:
            if t.exists():
                t.unlink()
        else:
            atomic_write(t, base64.b64decode(old))
    for src, target in reversed(data.get("blobs", [])):
        s, t = Path(src), Path(target)
        if t.exists() and not s.exists():
            _move_file(t, s)


def _test_kill_point(name: str) -> None:
    """Crash tests only (tests/bundle/test_install_crash.py): SIGKILL install.sh and this
    process here when ``LLMCRATE_TEST_KILL_AT`` names this point."""
    if os.environ.get("LLMCRATE_TEST_KILL_AT") == name:
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


# recovery after a killed install.sh
#
# install.sh (PID p) works under PREFIX/lib with: .llmcrate.txn.p (its state, one line per
# step: "had_lib 0|1", "systemd yes|no", "backup PATH 0|1", "tmp PATH", last "done"),
# .llmcrate.new.p (the staged program), .llmcrate.old.p (the previous program, after the
# first rename), .llmcrate.models.p.json (the registration journal), PATH.llmcrate-bak.p
# (backups). A run killed before "done" is undone; one killed after it is cleaned up.
_TXN = re.compile(r"^\.llmcrate\.(?:txn|new|old|models)\.(\d+)(?:\.json)?$")
#: a registration's copy (".llmcrate-partial-PID"), a manifest being written (".NAME.PID.tmp"),
#: and the copies of versions before 0.1 ("-partial-PID", which Ollama's own part files
#: "-partial-N" share: those count from 0, so only PIDs from _OLD_MIN_PID on are taken as ours)
_PARTIAL = re.compile(r"\.llmcrate-partial-(\d+)$|^\..+\.(\d+)\.tmp$")
_OLD_PARTIAL = re.compile(r"^sha256-[0-9a-f]{64}-partial-(\d+)$")
_OLD_MIN_PID = 300


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rm(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _read_txn(path: Path) -> tuple[dict[str, str], list[tuple[str, bool]], list[str], bool]:
    state: dict[str, str] = {}
    backups: list[tuple[str, bool]] = []
    tmps: list[str] = []
    done = False
    for line in path.read_text(errors="replace").splitlines():
        key, _, rest = line.partition(" ")
        if key == "backup":
            target, _, existed = rest.rpartition(" ")
            backups.append((target, existed == "1"))
        elif key == "tmp":
            tmps.append(rest)
        elif key == "done":
            done = True
        elif key:
            state[key] = rest
    return state, backups, tmps, done


def recover_install(lib: Path, models_dir: Path | None = None) -> list[str]:
    """Finish what killed ``install.sh`` runs left behind under ``lib``'s parent; returns what was done.

    Runs of processes still alive are left alone. A run that had not committed is rolled back
    (the previous program back in ``lib``, its backups restored, its model registration undone);
    a committed one is cleaned up. Leftovers of install.sh versions that kept no state file are
    removed, restoring the previous program when the kill came between its two renames. Partial
    files of dead registrations in ``models_dir`` are removed.
    """
    parent = lib.parent
    done_msgs: list[str] = []
    pids = sorted({int(m.group(1)) for p in (parent.iterdir() if parent.is_dir() else [])
                   if (m := _TXN.match(p.name))})
    for pid in pids:
        if _pid_alive(pid):
            continue
        txn = parent / f".llmcrate.txn.{pid}"
        old, stage = parent / f".llmcrate.old.{pid}", parent / f".llmcrate.new.{pid}"
        journal = parent / f".llmcrate.models.{pid}.json"
        state, backups, tmps, committed = (_read_txn(txn) if txn.is_file()
                                           else ({}, [], [], False))
        if committed:
            done_msgs.append(f"finished the cleanup of install run {pid}")
            for target, _ in backups:
                _rm(Path(f"{target}.llmcrate-bak.{pid}"))
                _rm(Path(f"{target}.llmcrate-bak.{pid}.tmp"))
        elif txn.is_file() or (old.exists() and not lib.exists()):
            done_msgs.append(f"rolled back install run {pid}, which was killed midway")
            if journal.is_file():
                try:
                    rollback_models(journal)
                except (OSError, ValueError) as e:
                    logger.warning("could not undo the model registration of run %d: %s", pid, e)
            if old.exists():
                _rm(lib)
                os.rename(old, lib)
            elif state.get("had_lib") == "0" and lib.exists():
                _rm(lib)                        # a first install: nothing was there before
            for target, existed in reversed(backups):
                bak = Path(f"{target}.llmcrate-bak.{pid}")
                if existed and bak.exists():
                    os.replace(bak, target)
                elif not existed:
                    _rm(Path(target))
                _rm(Path(f"{bak}.tmp"))
            if state.get("systemd") == "yes":    # the service runs the program that is back
                for cmd in (["daemon-reload"], ["restart", "llmcrate.service"]):
                    if cmd[0] == "restart" and not lib.exists():
                        break
                    subprocess.run(["systemctl", *cmd], check=False, capture_output=True)
        else:
            done_msgs.append(f"removed the leftovers of install run {pid}")
        for path in (*map(Path, tmps), stage, old, journal, txn):
            _rm(path)
        for tmp in parent.glob(f".{journal.name}.*.tmp"):
            _rm(tmp)
    if models_dir is not None:
        for sub in ("blobs", "manifests"):
            root = models_dir / sub
            if not root.is_dir():
                continue
            for path in (root.rglob("*") if sub == "manifests" else root.iterdir()):
                m = _PARTIAL.search(path.name)
                legacy = _OLD_PARTIAL.match(path.name)
                if m:
                    pid = int(m.group(1) or m.group(2))
                elif legacy and int(legacy.group(1)) >= _OLD_MIN_PID:
                    pid = int(legacy.group(1))
                else:
                    continue
                if path.is_file() and not _pid_alive(pid):
                    path.unlink()
                    done_msgs.append(f"removed {path.name}, left by a killed registration")
    return done_msgs
