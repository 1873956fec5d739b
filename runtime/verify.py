"""Bundle checks on the target host: verify digests, refuse unsafe archives, preflight, model registration.

Stdlib + ``runtime`` only, because ``install.sh`` runs it straight from the bundled llmcrate wheel
(``PYTHONPATH=wheels/llmcrate-*.whl python3 -m runtime.verify ...``) before anything is installed.

A bundle is one folder ``<name>-<version>/`` holding ``bundle.json`` (always the first tar member)
that lists sha256 and size of every other file. It can be checked as an extracted folder, a tar
(``.tar``, ``.tar.gz``, ``.tar.zst``) or split volumes (``X.tar.000``, ``X.tar.001`` ...).

    python3 -m runtime.verify verify BUNDLE
    python3 -m runtime.verify preflight BUNDLE_DIR --prefix P --models-dir M --host H:P
    python3 -m runtime.verify register BUNDLE_DIR/models MODELS_DIR --journal J
    python3 -m runtime.verify rollback --journal J
    python3 -m runtime.verify recover --lib PREFIX/lib/llmcrate --models-dir MODELS_DIR
"""
from __future__ import annotations

import argparse
import base64
import errno
import gzip
import hashlib
import io
import json
import logging
import os
import platform
import posixpath
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Callable, Sequence

from runtime.errors import BundleError, DigestMismatch, UnsafeArchive

logger = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
BUNDLE_JSON = "bundle.json"
CHUNK = 1 << 20
_VOLUME = re.compile(r"^(?P<base>.+)\.(?P<num>\d{3})$")

Progress = Callable[[int], None]


@dataclass
class VerifyReport:
    """What a successful verify saw."""

    name: str
    version: str
    files: int = 0
    bytes: int = 0
    models: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# bundle.json
def check_bundle_json(meta: Any) -> dict[str, Any]:
    """Raise BundleError unless ``meta`` looks like a bundle.json this tool understands."""
    if not isinstance(meta, dict):
        raise BundleError("bundle.json is not a JSON object")
    fmt = meta.get("format")
    if fmt != BUNDLE_FORMAT:
        raise BundleError(f"bundle.json format {fmt!r} is not supported (this tool reads {BUNDLE_FORMAT})")
    for key in ("name", "version", "files", "models"):
        if key not in meta:
            raise BundleError(f"bundle.json lacks {key!r}")
    files = meta["files"]
    if not isinstance(files, dict):
        raise BundleError("bundle.json 'files' is not an object")
    for rel, entry in files.items():
        _check_relpath(rel)
        if not (isinstance(entry, dict) and isinstance(entry.get("size"), int)
                and re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", "")))):
            raise BundleError(f"bundle.json entry for {rel!r} lacks sha256/size")
    return meta


def _check_relpath(rel: str) -> None:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or rel in ("", ".") or "\\" in rel:
        raise UnsafeArchive(rel, "path leaves the bundle")


def top_folder(meta: dict[str, Any]) -> str:
    return f"{meta['name']}-{meta['version']}"


# ---------------------------------------------------------------------------------------------
# opening archives and volumes
class ConcatReader(io.RawIOBase):
    """A seekable read-only file over several files laid end to end (split volumes)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = list(paths)
        self._sizes = [p.stat().st_size for p in self._paths]
        self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
        self._total = sum(self._sizes)
        self._pos = 0
        self._idx = -1
        self._fh: IO[bytes] | None = None

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
                self._fh = open(self._paths[idx], "rb")
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
            return zstandard.ZstdDecompressor().stream_reader(raw)  # type: ignore[no-any-return]
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
        raw: IO[bytes] = io.BufferedReader(ConcatReader(vols), buffer_size=CHUNK)  # type: ignore[arg-type]
        logical = _VOLUME.match(vols[0].name).group("base")  # type: ignore[union-attr]
    elif path.is_file():
        raw = open(path, "rb")
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


def _hash_stream(fh: IO[bytes], progress: Progress | None = None) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    readinto = getattr(fh, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(buf)
            if not n:
                break
            h.update(view[:n])
        else:
            data = fh.read(CHUNK)
            if not data:
                break
            n = len(data)
            h.update(data)
        size += n
        if progress:
            progress(n)
    return h.hexdigest(), size


def _hash_file(path: Path, progress: Progress | None = None) -> tuple[str, int]:
    with open(path, "rb", buffering=0) as fh:
        return _hash_stream(fh, progress)


def _check_models(meta: dict[str, Any], read: Callable[[str], bytes]) -> dict[str, str]:
    """Each bundled model's manifest matches its digest and names only blobs the bundle holds."""
    files = meta["files"]
    models: dict[str, str] = {}
    for name, entry in sorted(meta["models"].items()):
        rel = entry["manifest"]
        if rel not in files:
            raise BundleError(f"model {name}: manifest {rel} is not in the bundle")
        digest = "sha256:" + files[rel]["sha256"]
        if entry.get("digest") != digest:
            raise DigestMismatch(entry.get("digest", "?"), digest, what=f"manifest of {name}")
        try:
            manifest = json.loads(read(rel))
            layers = [manifest["config"], *manifest.get("layers", [])]
        except (ValueError, KeyError, TypeError) as e:
            raise BundleError(f"model {name}: unreadable manifest: {e}") from e
        for layer in layers:
            blob = "models/blobs/" + str(layer.get("digest", "")).replace(":", "-", 1)
            if blob not in files:
                raise BundleError(f"model {name}: blob {layer.get('digest')} is not in the bundle")
            if files[blob]["size"] != layer.get("size"):
                raise BundleError(f"model {name}: blob {layer.get('digest')} has the wrong size")
        models[name] = digest
    return models


def verify_dir(root: Path, *, progress: Progress | None = None, store: Path | None = None) -> VerifyReport:
    """Check every file of an extracted bundle against bundle.json; BundleError on the first problem.

    ``store``: a model store that an earlier install of this bundle moved the blobs into; a blob
    missing from the folder is then checked there instead (so install.sh can run again).
    """
    meta_path = root / BUNDLE_JSON
    if not meta_path.is_file():
        raise BundleError(f"{root}: not a bundle (no {BUNDLE_JSON})")
    try:
        meta = check_bundle_json(json.loads(meta_path.read_bytes()))
    except ValueError as e:
        raise BundleError(f"{meta_path}: corrupt: {e}") from e
    files: dict[str, dict[str, Any]] = meta["files"]
    seen = set()
    root_real = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in list(dirnames):
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                raise UnsafeArchive(os.path.relpath(full, root), "links are not allowed in a bundle")
        for f in filenames:
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if os.path.islink(full) and not os.path.realpath(full).startswith(root_real + os.sep):
                raise UnsafeArchive(rel, "link leaves the bundle")
            if rel == BUNDLE_JSON:
                continue
            if rel not in files:
                raise BundleError(f"unexpected file {rel} (not listed in bundle.json)")
            seen.add(rel)
    report = VerifyReport(name=meta["name"], version=str(meta["version"]), meta=meta)
    for rel in sorted(files):
        entry = files[rel]
        path = root / rel
        if rel not in seen:
            moved = store / "blobs" / rel.rsplit("/", 1)[1] if store and rel.startswith("models/blobs/") else None
            if moved is None or not moved.is_file():
                raise BundleError(f"missing file {rel} (bundle incomplete or truncated)")
            path = moved
        size = path.stat().st_size
        if size != entry["size"]:
            raise BundleError(f"{rel}: size {size}, expected {entry['size']} (truncated or modified)")
        digest, _ = _hash_file(path, progress)
        if digest != entry["sha256"]:
            raise DigestMismatch("sha256:" + entry["sha256"], "sha256:" + digest, what=rel)
        report.files += 1
        report.bytes += size
    report.models = _check_models(meta, lambda rel: (root / rel).read_bytes())
    return report


def read_bundle_json(path: Path) -> dict[str, Any]:
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
            return check_bundle_json(json.loads(raw))
        except ValueError as e:
            raise BundleError(f"{path}: {BUNDLE_JSON} is not valid JSON: {e}") from e
    if not path.exists() and not volumes_of(path):
        raise BundleError(f"{path}: no such bundle file or folder")
    tf = open_archive(path)
    try:
        first = tf.next()
        if first is None or PurePosixPath(first.name).name != BUNDLE_JSON or first.name.count("/") != 1:
            raise BundleError(f"{path}: bundle.json is not the first member (not a llmcrate bundle?)")
        fh = tf.extractfile(first)
        assert fh is not None
        return check_bundle_json(json.loads(fh.read()))
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise BundleError(f"{path}: unreadable bundle: {e}") from e
    finally:
        tf.close()


def verify_archive(path: Path, *, progress: Progress | None = None) -> VerifyReport:
    """Check a bundle tar (or volumes) member by member without extracting it."""
    tf = open_archive(path)
    small: dict[str, bytes] = {}
    try:
        first = tf.next()
        if first is None or first.name.count("/") != 1 or PurePosixPath(first.name).name != BUNDLE_JSON:
            raise BundleError(f"{path}: bundle.json is not the first member (not a llmcrate bundle?)")
        top = first.name.split("/")[0]
        check_member(first, top)
        fh = tf.extractfile(first)
        assert fh is not None
        try:
            meta = check_bundle_json(json.loads(fh.read()))
        except ValueError as e:
            raise BundleError(f"{path}: corrupt bundle.json: {e}") from e
        if top != top_folder(meta):
            raise UnsafeArchive(first.name, f"top folder is not {top_folder(meta)}/")
        files: dict[str, dict[str, Any]] = meta["files"]
        report = VerifyReport(name=meta["name"], version=str(meta["version"]), meta=meta)
        seen: set[str] = set()
        for member in tf:
            if member is first:
                continue
            rel = check_member(member, top)
            if member.isdir():
                continue
            if rel not in files:
                raise BundleError(f"unexpected file {rel} (not listed in bundle.json)")
            if rel in seen:
                raise BundleError(f"{rel} appears twice in the archive")
            seen.add(rel)
            entry = files[rel]
            data = tf.extractfile(member)
            assert data is not None
            if rel.startswith("models/manifests/"):
                raw = data.read()
                small[rel] = raw
                digest, size = hashlib.sha256(raw).hexdigest(), len(raw)
            else:
                digest, size = _hash_stream(data, progress)
            if size != entry["size"]:
                raise BundleError(f"{rel}: size {size}, expected {entry['size']} (truncated or modified)")
            if digest != entry["sha256"]:
                raise DigestMismatch("sha256:" + entry["sha256"], "sha256:" + digest, what=rel)
            report.files += 1
            report.bytes += size
        if getattr(tf.fileobj, "seekable", lambda: False)():
            # every member read fine; a cut archive still lacks its two zero end blocks
            tf.fileobj.seek(tf.offset)
            end = tf.fileobj.read(2 * tarfile.BLOCKSIZE)
            if len(end) < 2 * tarfile.BLOCKSIZE or end.strip(b"\0"):
                raise BundleError(f"{path}: archive is truncated (no end-of-archive marker)")
    except (tarfile.TarError, EOFError, zlib_error(), OSError) as e:
        raise BundleError(f"{path}: archive is truncated or corrupt: {e}") from e
    finally:
        tf.close()
    missing = sorted(set(files) - seen)
    if missing:
        raise BundleError(f"missing file {missing[0]} and {len(missing) - 1} more (bundle truncated "
                          "or a volume missing)" if len(missing) > 1 else
                          f"missing file {missing[0]} (bundle truncated or a volume missing)")
    report.models = _check_models(meta, lambda rel: small[rel])
    return report


def zlib_error() -> type[BaseException]:
    import zlib
    return zlib.error


def verify_bundle(path: Path, *, progress: Progress | None = None, store: Path | None = None) -> VerifyReport:
    """Verify a bundle folder, tar, compressed tar or split volumes (``store``: see :func:`verify_dir`)."""
    path = Path(path)
    if path.is_dir():
        return verify_dir(path, progress=progress, store=store)
    return verify_archive(path, progress=progress)


def safe_extract(path: Path, dest: Path) -> Path:
    """Verify and extract a bundle archive into ``dest``; returns the bundle folder.

    Refuses unsafe members before writing anything; extracts into a temp folder renamed at the end.
    """
    report = verify_archive(path)
    top = top_folder(report.meta)
    final = dest / top
    if final.exists():
        raise BundleError(f"{final} already exists")
    tmp = dest / f".{top}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tf = open_archive(path)
        with tf:
            for member in tf:
                rel = check_member(member, top)
                target = tmp / rel if rel else tmp
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                assert src is not None
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                os.chmod(target, member.mode & 0o755)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------------------------
# model registration into the target store (with an undo journal for install.sh's rollback)
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _move_file(src: Path, dst: Path) -> None:
    """Rename when on the same filesystem, else copy to a temp next to ``dst``, fsync, rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    tmp = dst.with_name(f"{dst.name}.llmcrate-partial-{os.getpid()}")
    try:
        with open(src, "rb") as a, open(tmp, "wb") as b:
            shutil.copyfileobj(a, b, CHUNK)
            b.flush()
            os.fsync(b.fileno())
        os.replace(tmp, dst)
        src.unlink()
    finally:
        if tmp.exists():
            tmp.unlink()


class _Journal:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, list[Any]] = {"blobs": [], "manifests": []}

    def save(self) -> None:
        if self.path is not None:
            _atomic_write(self.path, json.dumps(self.data, indent=1).encode())


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
        _fsync_dir(dst / "blobs")
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
            _atomic_write(target, new)
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
            _atomic_write(t, base64.b64decode(old))
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


# ---------------------------------------------------------------------------------------------
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
                old = _OLD_PARTIAL.match(path.name)
                if m:
                    pid = int(m.group(1) or m.group(2))
                elif old and int(old.group(1)) >= _OLD_MIN_PID:
                    pid = int(old.group(1))
                else:
                    continue
                if path.is_file() and not _pid_alive(pid):
                    path.unlink()
                    done_msgs.append(f"removed {path.name}, left by a killed registration")
    return done_msgs


# ---------------------------------------------------------------------------------------------
# preflight
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
    from runtime import hardware

    meta = read_bundle_json(bundle)
    checks: list[Check] = []
    machine = machine or platform.machine()
    arch = meta.get("arch", "x86_64")
    checks.append(Check("architecture", machine == arch,
                        f"{machine}" + ("" if machine == arch else f", but the bundle is for {arch}")))
    glibc = _glibc()
    need = tuple(meta.get("glibc_min") or ())
    if glibc:
        ok = not need or glibc >= tuple(need)
        checks.append(Check("glibc", ok, ".".join(map(str, glibc)) + (
            "" if ok else f", bundle needs {'.'.join(map(str, need))} or newer")))
    else:
        checks.append(Check("glibc", False, "not a glibc system (musl/Alpine is not supported)"))
    pyv = python_version or sys.version_info[:2]
    tags = [str(t) for t in meta.get("python", [])]
    pv = f"{pyv[0]}.{pyv[1]}"
    checks.append(Check("python3", pv in tags, f"{sys.executable} {pv}" + (
        "" if pv in tags else f"; the bundle carries wheels for {', '.join(tags)}")))
    files = meta["files"]
    models_bytes = sum(e["size"] for r, e in files.items() if r.startswith("models/blobs/")
                       and not (models_dir / "blobs" / r.rsplit("/", 1)[1]).exists())
    if _same_fs(bundle, models_dir):
        models_bytes = 0  # moved by rename
    other = sum(e["size"] for r, e in files.items() if r.startswith(("wheels/", "runtimes/")))
    need_prefix = 3 * other  # unpacked wheels + runtimes, with room for the previous install
    for label, where, needed in (("disk (models)", models_dir, models_bytes), ("disk (prefix)", prefix, need_prefix)):
        at, free = _free_bytes(where)
        if _same_fs(models_dir, prefix) and label == "disk (prefix)":
            needed += models_bytes
        checks.append(Check(label, free >= needed,
                            f"{free / 1e9:.1f} GB free in {at}, {needed / 1e9:.2f} GB needed"))
    checks.append(_port_check(host, port))
    host_probe = hw or hardware.Host()
    cpu = hardware.get_backend("cpu").probe(host_probe, runtime=meta.get("runtimes", {}).get("cpu"))
    portable = meta.get("runtimes", {}).get("cpu", {}).get("portable") is not False
    checks.append(Check("cpu", cpu.ok, (cpu.reason + " " + " ".join(cpu.info.get("simd", [])))  # type: ignore[arg-type]
                        .strip() + ("" if portable else " (cpu runtime built for the build host's CPU)")))
    for name, facts in sorted(meta.get("runtimes", {}).items()):
        fam = hardware.family_of(name)
        if fam == "cpu" or fam not in hardware.BACKENDS:
            continue
        p = hardware.get_backend(fam).probe(host_probe, runtime=facts)
        checks.append(Check(name, p.ok, p.reason + ("" if p.ok else " -> will use cpu"), fatal=False))
    return checks


def pip_wheel_for(bundle: Path, python: str) -> str:
    """File name of the bundled pip wheel that runs on ``python`` ("3.11")."""
    meta = read_bundle_json(bundle)
    name = meta.get("pip", {}).get(python)
    if not name:
        raise BundleError(f"the bundle carries no pip for Python {python}")
    return str(name)


def write_conf(path: Path, values: dict[str, str]) -> None:
    """Write a sh-sourceable KEY='value' file (install.conf) atomically."""
    import shlex
    for k in values:
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", k):
            raise BundleError(f"bad variable name {k!r}")
    _atomic_write(path, "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()).encode())


def substitute(src: Path, dst: Path, values: dict[str, str]) -> None:
    """Copy ``src`` to ``dst`` atomically with every ``@KEY@`` replaced; refuses leftovers."""
    text = src.read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise BundleError(f"{src.name}: no value for {', '.join(sorted(set(left)))}")
    _atomic_write(dst, text.encode())


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


def _kv(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep:
            raise BundleError(f"expected KEY=VALUE, got {it!r}")
        out[k] = v
    return out


def _main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m runtime.verify")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify")
    v.add_argument("bundle", type=Path)
    v.add_argument("--store", type=Path, help="store an earlier install moved the blobs into")
    pf = sub.add_parser("preflight")
    pf.add_argument("bundle", type=Path)
    pf.add_argument("--prefix", type=Path, required=True)
    pf.add_argument("--models-dir", type=Path, required=True)
    pf.add_argument("--host", required=True)
    r = sub.add_parser("register")
    r.add_argument("src", type=Path)
    r.add_argument("dst", type=Path)
    r.add_argument("--journal", type=Path)
    rb = sub.add_parser("rollback")
    rb.add_argument("--journal", type=Path, required=True)
    rc = sub.add_parser("recover")
    rc.add_argument("--lib", type=Path, required=True)
    rc.add_argument("--models-dir", type=Path)
    pw = sub.add_parser("pip-wheel")
    pw.add_argument("bundle", type=Path)
    pw.add_argument("--python", required=True)
    wc = sub.add_parser("write-conf")
    wc.add_argument("path", type=Path)
    wc.add_argument("values", nargs="*")
    sb = sub.add_parser("subst")
    sb.add_argument("src", type=Path)
    sb.add_argument("dst", type=Path)
    sb.add_argument("values", nargs="*")
    sm = sub.add_parser("smoke")
    sm.add_argument("--host", required=True)
    sm.add_argument("--model", default="")
    sm.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "verify":
            rep = verify_bundle(args.bundle, store=args.store)
            print(f"OK: {rep.name} {rep.version}: {rep.files} files, {rep.bytes / 1e6:.1f} MB, "
                  f"{len(rep.models)} model(s) verified")
        elif args.cmd == "preflight":
            from runtime.config import parse_host
            addr = parse_host(args.host)
            checks = preflight(args.bundle, prefix=args.prefix, models_dir=args.models_dir,
                               host=addr.host, port=addr.port)
            bad = False
            for c in checks:
                mark = "ok  " if c.ok else ("FAIL" if c.fatal else "warn")
                print(f"  [{mark}] {c.name:<14} {c.detail}")
                bad = bad or (c.fatal and not c.ok)
            return 1 if bad else 0
        elif args.cmd == "register":
            for rel in register_models(args.src, args.dst, journal=args.journal):
                print(f"  model {rel.split('manifests/', 1)[-1]}")
        elif args.cmd == "rollback":
            rollback_models(args.journal)
        elif args.cmd == "recover":
            for msg in recover_install(args.lib, args.models_dir):
                print(f"  {msg}")
        elif args.cmd == "pip-wheel":
            print(pip_wheel_for(args.bundle, args.python))
        elif args.cmd == "write-conf":
            write_conf(args.path, _kv(args.values))
        elif args.cmd == "subst":
            substitute(args.src, args.dst, _kv(args.values))
        elif args.cmd == "smoke":
            print(f"  server {smoke_test(args.host, args.model, timeout=args.timeout)} answered")
    except (BundleError, DigestMismatch, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
