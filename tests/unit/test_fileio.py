"""runtime.fileio: the one atomic write, folder fsync, disk-full mapping and file hash."""
from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path

import pytest

from runtime.errors import InsufficientSpace, StoreError
from runtime.fileio import atomic_write, disk_error, fsync_dir, new_temp, sha256_file, sha256_stream


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600


def test_atomic_write_removes_its_temp_when_the_rename_fails(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "d").mkdir()
    target = tmp_path / "d" / "f"
    target.write_bytes(b"old")

    def fail(*_a: object) -> None:
        raise OSError(errno.EIO, "boom")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["f"]


def test_atomic_write_uses_the_given_temp_maker(tmp_path: Path) -> None:
    made: list[Path] = []

    def maker(d: Path) -> tuple[int, Path]:
        fd, p = new_temp(d, prefix=".mine-")
        made.append(p)
        return fd, p

    atomic_write(tmp_path / "x", b"data", make_temp=maker)
    assert made and made[0].name.startswith(".mine-") and not made[0].exists()
    assert (tmp_path / "x").read_bytes() == b"data"


def test_default_temp_name_is_the_one_recovery_recognises(tmp_path: Path) -> None:
    from runtime.bundle.register import _PARTIAL

    fd, p = new_temp(tmp_path, prefix=".latest.", suffix=f".{os.getpid()}.tmp")
    os.close(fd)
    m = _PARTIAL.search(p.name)
    assert m and int(m.group(2)) == os.getpid()


def test_disk_error_maps_disk_full_and_quota(tmp_path: Path) -> None:
    for code in (errno.ENOSPC, errno.EDQUOT):
        err = disk_error(OSError(code, "full"), tmp_path)
        assert isinstance(err, InsufficientSpace) and err.path == str(tmp_path)
    other = disk_error(OSError(errno.EIO, "I/O error"), tmp_path)
    assert isinstance(other, StoreError) and "I/O error" in str(other)


def test_sha256_file_and_stream_agree_and_count_bytes(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    f = tmp_path / "blob"
    f.write_bytes(data)
    seen: list[int] = []
    got = sha256_file(f, progress=seen.append)
    assert got.hex == hashlib.sha256(data).hexdigest() and got.size == len(data) == sum(seen)
    assert got.digest == "sha256:" + got.hex

    class ReadOnly:  # no readinto: the read() path
        def __init__(self) -> None:
            self.b = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self.b.read(n)

    assert sha256_stream(ReadOnly(), chunk=1 << 20) == got  # type: ignore[arg-type]


def test_fsync_dir_tolerates_a_missing_folder(tmp_path: Path) -> None:
    fsync_dir(tmp_path / "nope")
    fsync_dir(tmp_path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
