"""Reading bundle archives: a tar, a compressed tar (``.tar.gz``, ``.tar.zst``) or split volumes
(``X.tar.000``, ``X.tar.001`` ...), and refusing members that could write outside the bundle."""
from __future__ import annotations

import gzip
import io
import json
import posixpath
import re
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

from runtime.bundle.format import BUNDLE_JSON, BundleMeta
from runtime.errors import BundleError, UnsafeArchive

#: read size for archives (tar streams, volumes)
CHUNK = 1 << 20
_VOLUME = re.compile(r"^(?P<base>.+)\.(?P<num>\d{3})$")


class ConcatReader(io.RawIOBase):
    """A seekable read-only file over several files laid end to end (split volumes)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = list(paths)
        self._sizes = [p.stat().st_size for p in self._paths]
        self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
        self._total = sum(self._sizes)
        self._pos = 0
        self._idx = -1
        self._fh: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._total}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        done = 0
        while done < len(view) and self._pos < self._total:
            idx = max(i for i, s in enumerate(self._starts) if s <= self._pos)
            if idx != self._idx:
                if self._fh:
                    self._fh.close()
                self._fh = open(self._paths[idx], "rb")  # noqa: SIM115 (kept open across reads; close() closes it)
                self._idx = idx
            assert self._fh is not None
            self._fh.seek(self._pos - self._starts[idx])
            n = self._fh.readinto(view[done:])
            if not n:
                break
            done += n
            self._pos += n
        return done

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None
        super().close()


def volumes_of(path: Path) -> list[Path]:
    """The ordered volumes of a split bundle given any one of them (or the base name)."""
    m = _VOLUME.match(path.name)
    base = m.group("base") if m else path.name
    found = {}
    for p in path.parent.glob(glob_escape(base) + ".[0-9][0-9][0-9]"):
        vm = _VOLUME.match(p.name)
        if vm and vm.group("base") == base:
            found[int(vm.group("num"))] = p
    if not found:
        return []
    listed = path.parent / f"{base}.volumes"
    expected = max(found) + 1
    if listed.is_file():
        names = [ln.split()[-1] for ln in listed.read_text().splitlines() if ln.strip()]
        for n in names:
            if not (path.parent / n).is_file():
                raise BundleError(f"missing volume {n} (listed in {listed.name})")
        expected = len(names)
    for i in range(expected):
        if i not in found:
            raise BundleError(f"missing volume {base}.{i:03d}")
    return [found[i] for i in range(expected)]


def glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)


def _decompressed(raw: IO[bytes], name: str) -> IO[bytes]:
    if name.endswith((".gz", ".tgz")):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if name.endswith((".zst", ".zstd")):
        try:
            import zstandard  # optional on the target: falls back to the zstd command
            return zstandard.ZstdDecompressor().stream_reader(raw)
        except ImportError:
            exe = shutil.which("zstd")
            if exe is None:
                raise BundleError("this bundle is zstd-compressed: install zstd or decompress it "
                                  "elsewhere (zstd -d)") from None
            proc = subprocess.Popen([exe, "-dc"], stdin=raw, stdout=subprocess.PIPE)
            assert proc.stdout is not None
            return proc.stdout
    return raw


def open_archive(path: Path) -> tarfile.TarFile:
    """Open a bundle tar, compressed tar, or split volumes for reading members in order."""
    vols = volumes_of(path) if _VOLUME.match(path.name) or not path.exists() else []
    if vols:
        raw: IO[bytes] = io.BufferedReader(ConcatReader(vols), buffer_size=CHUNK)
        logical = _VOLUME.match(vols[0].name).group("base")  # type: ignore[union-attr]
    elif path.is_file():
        raw = open(path, "rb")  # noqa: SIM115 (handed to the tar reader, closed with it)
        logical = path.name
    else:
        raise BundleError(f"{path}: no such bundle")
    stream = _decompressed(raw, logical)
    try:
        if stream is raw:
            return tarfile.open(fileobj=raw, mode="r:")
        return tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK)
    except tarfile.TarError as e:
        raw.close()
        raise BundleError(f"{path}: not a readable bundle archive: {e}") from e


def check_member(member: tarfile.TarInfo, top: str) -> str:
    """Return the member's path inside the top folder; UnsafeArchive for anything that could escape."""
    name = member.name
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith("/"):
        raise UnsafeArchive(name, "absolute path")
    if ".." in p.parts:
        raise UnsafeArchive(name, "'..' in path")
    if not p.parts or p.parts[0] != top:
        raise UnsafeArchive(name, f"outside the bundle folder {top}/")
    if member.issym() or member.islnk():
        target = member.linkname
        base = posixpath.dirname(name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, target))
        if target.startswith("/") or resolved.split("/")[0] != top or resolved.startswith(".."):
            raise UnsafeArchive(name, f"link to {target!r} leaves the bundle")
        raise UnsafeArchive(name, "links are not allowed in a bundle")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchive(name, "not a regular file or folder")
    return "/".join(p.parts[1:])


def is_bundle_json_member(member: tarfile.TarInfo | None) -> bool:
    """Whether ``member`` is ``<top>/bundle.json``, which every bundle has as its first member."""
    return (member is not None and member.name.count("/") == 1
            and PurePosixPath(member.name).name == BUNDLE_JSON)


def read_bundle_json(path: Path) -> BundleMeta:
    """bundle.json of a bundle folder or archive (reads only the first member of an archive)."""
    if path.is_dir():
        try:
            raw = (path / BUNDLE_JSON).read_bytes()
        except FileNotFoundError:
            raise BundleError(f"{path}: no {BUNDLE_JSON} in this folder (not a llmcrate bundle?)") \
                from None
        except OSError as e:
            raise BundleError(f"{path}: cannot read {BUNDLE_JSON}: {e.strerror}") from e
        try:
            return BundleMeta.from_json(json.loads(raw))
        except ValueError as e:
            raise BundleError(f"{path}: {BUNDLE_JSON} is not valid JSON: {e}") from e
    if not path.exists() and not volumes_of(path):
        raise BundleError(f"{path}: no such bundle file or folder")
    tf = open_archive(path)
    try:
        first = tf.next()
        if first is None or not is_bundle_json_member(first):
            raise BundleError(f"{path}: bundle.json is not the first member (not a llmcrate bundle?)")
        fh = tf.extractfile(first)
        assert fh is not None
        return BundleMeta.from_json(json.loads(fh.read()))
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise BundleError(f"{path}: unreadable bundle: {e}") from e
    finally:
        tf.close()
