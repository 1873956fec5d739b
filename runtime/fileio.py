"""Crash-safe file helpers shared by the store, the downloader, the bundle tools and the packer.

Stdlib + :mod:`runtime.errors` only: ``install.sh`` runs :mod:`runtime.bundle` (which uses this)
straight from the bundled wheel with the host's bare ``python3``.

- :func:`new_temp` / :func:`atomic_write` / :func:`atomic_copy`: unique temp file in the target folder, fsync, rename,
  the temp removed in ``finally`` (STYLE.md habit 6; huggingface_hub ``_download_to_tmp_and_move``).
- :func:`fsync_dir`: make a rename durable.
- :func:`disk_error`: the LlmcrateError a failed write means (disk full -> InsufficientSpace).
- :func:`sha256_file` / :func:`sha256_stream`: the one sha256-of-bytes-on-disk helper.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from runtime.errors import InsufficientSpace, LlmcrateError, StoreError

#: read size for hashing (large reads let sha256 run at memory speed)
CHUNK = 8 << 20

#: receives the number of bytes just read (a byte counter; callers turn it into ProgressEvents)
ByteProgress = Callable[[int], None]
#: makes a temp file in a folder: ``(fd, path)``; see :func:`new_temp`
TempMaker = Callable[[Path], tuple[int, Path]]


@dataclass(frozen=True)
class FileHash:
    """The sha256 and byte count of what was read."""

    hex: str
    size: int

    @property
    def digest(self) -> str:
        """``sha256:<hex>``, the form manifests and the store use."""
        return "sha256:" + self.hex


def sha256_stream(fh: IO[bytes], *, progress: ByteProgress | None = None,
                  chunk: int = CHUNK) -> FileHash:
    """Hash ``fh`` to its end with one reused buffer (``readinto`` when the stream has it).

    Args:
        fh: a binary stream (a file, a tar member, a pipe).
        progress: called with the byte count of every read.
        chunk: the read size.
    """
    h = hashlib.sha256()
    size = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    readinto = getattr(fh, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(buf)
            if not n:
                break
            h.update(view[:n])
        else:
            data = fh.read(chunk)
            if not data:
                break
            n = len(data)
            h.update(data)
        size += n
        if progress:
            progress(n)
    return FileHash(h.hexdigest(), size)


def sha256_file(path: Path, *, progress: ByteProgress | None = None) -> FileHash:
    """sha256 and size of the file at ``path`` (see :func:`sha256_stream`)."""
    with open(path, "rb", buffering=0) as fh:
        return sha256_stream(fh, progress=progress)


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename into it survives a power cut; silent where folders can't be synced."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:   # some filesystems refuse fsync on a folder: nothing more to do there
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_temp(directory: Path, *, prefix: str = ".tmp-", suffix: str = "") -> tuple[int, Path]:
    """A unique temp file in ``directory`` (``prefix + random + suffix``), open for writing.

    Readable like any file this process creates (0666 less the umask), not mkstemp's 0600: a
    manifest or blob written by root (install.sh, ``llmcrate pull`` as an operator) must stay
    readable by the service's own user.
    """
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:
        pass
    return fd, Path(tmp)


def atomic_write(path: Path, data: bytes, *, make_temp: TempMaker | None = None) -> None:
    """Write ``data`` to ``path``: unique temp file in the same folder, fsync, rename, fsync folder.

    A reader sees the old bytes or the new ones, never a mix; the temp file is removed if
    anything fails (or the process is interrupted) before the rename.

    Args:
        path: the file to replace or create (its folder is created).
        data: the new contents.
        make_temp: makes the temp file; default :func:`new_temp` named
            ``.<name>.<random>.<pid>.tmp`` (the form ``runtime.bundle`` recovery recognises).
    """
    _write_via_temp(path, lambda f: f.write(data), make_temp)


def atomic_copy(src: Path, dst: Path, *, make_temp: TempMaker | None = None) -> None:
    """Copy ``src`` to ``dst`` the way :func:`atomic_write` writes (for a move across filesystems)."""
    def copy(out: IO[bytes]) -> None:
        with open(src, "rb") as fin:
            shutil.copyfileobj(fin, out, CHUNK)
    _write_via_temp(dst, copy, make_temp)


def _write_via_temp(path: Path, write: Callable[[IO[bytes]], object], make_temp: TempMaker | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if make_temp is None:
        fd, tmp = new_temp(path.parent, prefix=f".{path.name}.", suffix=f".{os.getpid()}.tmp")
    else:
        fd, tmp = make_temp(path.parent)
    done = False
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    fsync_dir(path.parent)


def disk_error(e: OSError, where: Path) -> LlmcrateError:
    """The error a failed write to ``where`` means: InsufficientSpace when the disk or quota is full."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientSpace(str(where), 0, shutil.disk_usage(where).free)
    return StoreError(f"cannot write to {where}: {e.strerror or e}")
