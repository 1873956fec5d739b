"""The model store, byte-compatible with Ollama's ``models/`` folder.

Layout (DESIGN.md, contract)::

    <root>/manifests/<host>/<namespace>/<model>/<tag>   manifest bytes exactly as served / written
    <root>/blobs/sha256-<hex>                            layers and config blobs

Old Ollama stores named blobs ``sha256:<hex>``; those are read as they are. A model's ID is the
sha256 of its manifest bytes. Every write is atomic (unique temp file in the target directory,
fsync, rename); blobs are written before the manifest that names them, and a blob is deleted only
when no manifest references it any more.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

from runtime.errors import (
    DigestMismatch,
    InsufficientSpace,
    InvalidName,
    ModelNotFound,
    ReadOnlyStore,
    StoreError,
)
from runtime.fileio import atomic_write, disk_error, fsync_dir, new_temp, sha256_file
from runtime.models.names import ModelName, parse_name

logger = logging.getLogger(__name__)

MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_LICENSE = "application/vnd.ollama.image.license"

CHUNK = 8 << 20
#: no blob is bigger (1 PiB): a larger or negative size in a manifest is a forged one
MAX_BLOB_SIZE = 1 << 50
#: partial downloads / temp files untouched for this long are garbage
STALE_PARTIAL_SECONDS = 24 * 3600
#: keep this much free beyond what a write needs
SPACE_MARGIN = 64 << 20
_TMP_PREFIX = ".tmp-"
#: a temp file this version writes: ".tmp-<pid>-<random>", flock-ed by its writer while in use
_OWNED_TMP = re.compile(r"^\.tmp-(\d+)-")
#: at the store's root (Ollama reads only manifests/ and blobs/): which local files were
#: stored as which blob (see Store._source_digest)
SOURCES_FILE = ".llmcrate-sources.json"


def check_digest(digest: str) -> str:
    """Return the 64-hex part of ``sha256:<hex>`` / ``sha256-<hex>``; StoreError otherwise."""
    d = digest.strip()
    for sep in (":", "-"):
        if d.startswith("sha256" + sep):
            hexpart = d[7:]
            if len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart):
                return hexpart
    raise StoreError(f'invalid digest "{digest}" (expected sha256:<64 hex digits>)')


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str
    size: int
    from_: str | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.from_:
            d["from"] = self.from_
        return d

    @classmethod
    def from_json(cls, d: Any) -> Layer:
        if not isinstance(d, dict):
            raise StoreError("layer is not an object")
        try:
            media, digest, size = d["mediaType"], d["digest"], d["size"]
        except KeyError as e:
            raise StoreError(f"layer lacks {e.args[0]!r}") from None
        if not isinstance(media, str) or not isinstance(size, int) or isinstance(size, bool):
            raise StoreError("layer has a bad mediaType or size")
        if not 0 <= size <= MAX_BLOB_SIZE:
            raise StoreError(f"layer {str(digest)[:19]} has an impossible size {size}")
        check_digest(str(digest))
        return cls(media_type=media, digest=digest, size=size, from_=d.get("from") or None)


@dataclass
class Manifest:
    schema_version: int
    media_type: str
    config: Layer
    layers: list[Layer]
    raw: bytes
    digest: str

    @classmethod
    def parse(cls, raw: bytes, *, name: str = "") -> Manifest:
        where = f" of {name}" if name else ""
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise StoreError(f"corrupt manifest{where}: {e}") from e
        if not isinstance(doc, dict):
            raise StoreError(f"corrupt manifest{where}: not a JSON object")
        try:
            config = Layer.from_json(doc.get("config"))
            layers = [Layer.from_json(x) for x in doc.get("layers") or []]
        except StoreError as e:
            raise StoreError(f"corrupt manifest{where}: {e}") from e
        return cls(schema_version=int(doc.get("schemaVersion", 2)),
                   media_type=str(doc.get("mediaType", MEDIA_MANIFEST)),
                   config=config, layers=layers, raw=bytes(raw),
                   digest="sha256:" + hashlib.sha256(raw).hexdigest())

    @classmethod
    def build(cls, *, config: Layer, layers: list[Layer]) -> Manifest:
        """A new manifest serialised the way Ollama writes one (compact JSON, Go field order)."""
        doc = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config.to_json(),
               "layers": [x.to_json() for x in layers]}
        raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        return cls.parse(raw)

    def layers_of(self, media_type: str) -> list[Layer]:
        return [x for x in self.layers if x.media_type == media_type]

    def all_blobs(self) -> list[Layer]:
        return [self.config, *self.layers]

    @property
    def size(self) -> int:
        return sum(x.size for x in self.all_blobs())

    @property
    def short_id(self) -> str:
        return check_digest(self.digest)[:12]


@dataclass
class ModelEntry:
    name: ModelName
    manifest: Manifest
    size: int
    modified: float
    path: Path = field(repr=False, default=Path())


def new_temp_file(directory: Path) -> tuple[int, Path]:
    """A unique temp file in ``directory``, readable like any file this process creates
    (0666 less the umask: 0644 usually). mkstemp's 0600 would leave blobs written by root
    (``llmcrate pull`` as an operator) unreadable by the service's own user; Ollama's blobs
    are 0644 too.

    Its name carries this process's PID and the returned descriptor holds an ``flock`` on it,
    so :meth:`Store.reclaim_temps` can tell a file a killed writer left from one being written.
    """
    fd, tmp = new_temp(directory, prefix=f"{_TMP_PREFIX}{os.getpid()}-")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:                     # a filesystem without locks: the PID still tells
        pass
    return fd, tmp


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                     # EPERM: alive, someone else's
        return True
    return True




def _write_error(e: OSError, root: Path) -> Exception:
    """The LlmcrateError an OSError from writing into the store means."""
    if e.errno == errno.EROFS:
        return ReadOnlyStore(root)
    if e.errno in (errno.EACCES, errno.EPERM):
        return ReadOnlyStore(root, permission=True)
    return disk_error(e, root)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a unique (locked) temp file in the same folder, fsync, rename."""
    atomic_write(path, data, make_temp=new_temp_file)


class Store:
    """An Ollama-layout model store rooted at ``root`` (``Settings.models_dir``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.blobs_dir = self.root / "blobs"
        self.manifests_dir = self.root / "manifests"
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ---- blobs -----------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        hexpart = check_digest(digest)
        p = self.blobs_dir / f"sha256-{hexpart}"
        if not p.exists():
            old = self.blobs_dir / f"sha256:{hexpart}"
            if old.exists():
                return old
        return p

    def has_blob(self, digest: str, *, verify: bool = False) -> bool:
        p = self.blob_path(digest)
        if not p.is_file():
            return False
        if verify and sha256_file(p).digest != "sha256:" + check_digest(digest):
            logger.warning("blob %s is corrupt; removing it", p.name)
            p.unlink(missing_ok=True)
            return False
        return True

    def partial_path(self, digest: str) -> Path:
        return self.blobs_dir / f"sha256-{check_digest(digest)}-partial"

    def check_space(self, needed: int, *, where: Path | None = None) -> None:
        """Raise InsufficientSpace unless ``needed`` bytes (plus a margin) fit in the store."""
        target = where or self.root
        probe = target
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if needed + SPACE_MARGIN > free:
            raise InsufficientSpace(str(target), needed + SPACE_MARGIN, free)

    def _new_temp(self) -> tuple[int, Path]:
        try:
            self.blobs_dir.mkdir(parents=True, exist_ok=True)
            return new_temp_file(self.blobs_dir)
        except OSError as e:
            raise _write_error(e, self.root) from e

    def check_writable(self) -> None:
        """Raise :class:`ReadOnlyStore` unless this process can write the models dir."""
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            fd, tmp = new_temp_file(probe)
        except OSError as e:
            raise _write_error(e, self.root) from e
        os.close(fd)
        tmp.unlink(missing_ok=True)

    def reclaim_temps(self, *, stale_after: float = STALE_PARTIAL_SECONDS) -> list[Path]:
        """Remove temp files in ``blobs/`` that no live process owns: those of a killed create or
        upload (their writer's PID is gone and nobody holds their lock), and temp files of older
        versions (no PID in the name) untouched for ``stale_after`` seconds."""
        removed: list[Path] = []
        try:
            entries = list(self.blobs_dir.iterdir())
        except OSError:
            return removed
        now = time.time()
        for p in entries:
            if not p.name.startswith(_TMP_PREFIX):
                continue
            m = _OWNED_TMP.match(p.name)
            try:
                if m is None:
                    if now - p.stat().st_mtime > stale_after:
                        p.unlink()
                        removed.append(p)
                    continue
                if _pid_alive(int(m.group(1))):
                    continue
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                p.unlink()
                removed.append(p)
            except OSError:                 # locked: a writer in another PID namespace
                pass
            finally:
                os.close(fd)
        if removed:
            logger.info("removed %d temp file(s) left by killed writers in %s", len(removed),
                        self.blobs_dir)
        return removed

    def _install_blob(self, tmp: Path, digest: str) -> Path:
        self.reclaim_temps()                # a killed run's copy of this (or any) blob
        final = self.blobs_dir / f"sha256-{check_digest(digest)}"
        if final.exists() or self.blob_path(digest).exists():
            tmp.unlink(missing_ok=True)  # identical content already stored
            return self.blob_path(digest)
        os.replace(tmp, final)
        fsync_dir(self.blobs_dir)
        return final

    def commit_blob(self, tmp: Path, digest: str, *, verify: bool = True) -> Path:
        """Move a finished file (same filesystem) into place, checking its sha256 first."""
        check_digest(digest)
        if verify:
            actual = sha256_file(tmp).digest
            if actual != "sha256:" + check_digest(digest):
                tmp.unlink(missing_ok=True)
                raise DigestMismatch("sha256:" + check_digest(digest), actual)
        with self._lock:
            return self._install_blob(Path(tmp), digest)

    def add_blob_bytes(self, data: bytes) -> Layer:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(digest):
            self.check_space(len(data))
            fd, tmp = self._new_temp()
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                self._install_blob(tmp, digest)
            finally:
                tmp.unlink(missing_ok=True)
        return Layer(media_type="", digest=digest, size=len(data))

    def add_blob_stream(self, chunks: Iterable[bytes], *, expected: str | None = None,
                        size_hint: int | None = None) -> Layer:
        """Stream bytes into a blob, hashing on the way; DigestMismatch if ``expected`` differs."""
        if size_hint:
            self.check_space(size_hint)
        fd, tmp = self._new_temp()
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    h.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            digest = "sha256:" + h.hexdigest()
            if expected is not None and digest != "sha256:" + check_digest(expected):
                raise DigestMismatch(expected, digest)
            self._install_blob(tmp, digest)
            return Layer(media_type="", digest=digest, size=size)
        except OSError as e:
            raise _write_error(e, self.root) from e
        finally:
            tmp.unlink(missing_ok=True)

    def add_blob_file(self, src: Path, *, progress: Callable[[int], None] | None = None) -> Layer:
        """Copy ``src`` into the store, hashing the same bytes on the way (one read of the data).

        The hash reads the file once; a second thread copies each hashed range in the kernel
        from the page cache (see :func:`_pipelined_copy`), so the whole costs about one sha256
        plus the final fsync. Memory stays flat whatever the size.
        """
        src = Path(src)
        try:
            st = src.stat()
        except OSError as e:
            raise StoreError(f"cannot read {src}: {e.strerror}") from e
        known = self._source_digest(src, st)
        if known is not None:
            # the same file (path, inode, size, mtime) was stored before and its blob is
            # still here: re-running create or a bundle build does not copy gigabytes again
            logger.info("%s is already stored as %s", src, known)
            if progress:
                progress(st.st_size)
            return Layer(media_type="", digest=known, size=st.st_size)
        self.check_space(st.st_size)
        fd, tmp = self._new_temp()
        try:
            with open(src, "rb", buffering=0) as fin:
                try:
                    os.posix_fadvise(fin.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                except (AttributeError, OSError):
                    pass
                # one fsync at the end: flushing while copying slowed the copy down (bench)
                digest = _pipelined_copy(fin, fd, progress)
            os.fsync(fd)
            st2 = src.stat()
            if (st2.st_size, st2.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise StoreError(f"{src} changed while it was being copied")
            with self._lock:
                self._install_blob(tmp, digest)
                self._remember_source(src, st, digest)
            return Layer(media_type="", digest=digest, size=st.st_size)
        except OSError as e:
            raise _write_error(e, self.root) from e
        finally:
            tmp.unlink(missing_ok=True)
            os.close(fd)                    # after the rename: the lock covers the whole write

    # A small record of which local files were stored as which blob, keyed by what changes
    # when a file changes (path, device, inode, size, mtime), as make and rsync trust.
    def _sources_path(self) -> Path:
        return self.root / SOURCES_FILE

    @staticmethod
    def _source_key(src: Path, st: os.stat_result) -> str:
        return f"{src.resolve()}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}"

    def _read_sources(self) -> dict[str, str]:
        """The record, keeping only entries that name a well-formed digest."""
        try:
            data = json.loads(self._sources_path().read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        out = {}
        for key, digest in data.items():
            try:
                check_digest(str(digest))
            except StoreError:
                continue
            out[str(key)] = str(digest)
        return out

    def _source_digest(self, src: Path, st: os.stat_result) -> str | None:
        digest = self._read_sources().get(self._source_key(src, st))
        if digest is None or not self.has_blob(digest):
            return None
        return digest if self.blob_path(digest).stat().st_size == st.st_size else None

    def _remember_source(self, src: Path, st: os.stat_result, digest: str) -> None:
        sources = {k: v for k, v in self._read_sources().items()
                   if v != digest and self.has_blob(v)}
        sources[self._source_key(src, st)] = digest
        try:
            atomic_write_bytes(self._sources_path(), json.dumps(sources, indent=0).encode())
        except OSError:  # only an optimisation
            logger.debug("cannot record the source of %s", digest)

    def read_blob(self, digest: str) -> bytes:
        p = self.blob_path(digest)
        try:
            return p.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"blob {digest} is missing from the store ({p})") from None

    # ---- manifests -------------------------------------------------------------------------
    def manifest_path(self, name: str | ModelName) -> Path:
        n = _name(name)
        return self.root / n.manifest_relpath()

    def _find_manifest(self, n: ModelName) -> Path | None:
        p = self.root / n.manifest_relpath()
        if p.is_file():
            return p
        # Names compare case-insensitively (Ollama); the store may hold another spelling.
        key = n.key()
        for entry_name, path in self._walk_manifests():
            if entry_name.key() == key:
                return path
        return None

    def resolve(self, name: str | ModelName) -> Manifest:
        n = _name(name)
        p = self._find_manifest(n)
        if p is None:
            raise ModelNotFound(n.display)
        return Manifest.parse(p.read_bytes(), name=n.display)

    def exists(self, name: str | ModelName) -> bool:
        return self._find_manifest(_name(name)) is not None

    def write_manifest(self, name: str | ModelName, raw: bytes) -> Manifest:
        """Atomically write a manifest after checking that every blob it names is stored."""
        n = _name(name)
        m = Manifest.parse(raw, name=n.display)
        missing = [x.digest for x in m.all_blobs() if not self.blob_path(x.digest).is_file()]
        if missing:
            raise StoreError(f"refusing to write manifest for {n.display}: missing blob(s) "
                             + ", ".join(missing))
        with self._lock:
            existing = self._find_manifest(n)
            target = self.root / n.manifest_relpath()
            try:
                if existing is not None and existing != target:
                    existing.unlink()  # another case spelling of the same name: replace it
                    self._prune_dirs(existing.parent)
                atomic_write_bytes(target, raw)
            except OSError as e:
                raise _write_error(e, self.root) from e
        return m

    def _walk_manifests(self) -> Iterator[tuple[ModelName, Path]]:
        base = self.manifests_dir
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(base).parts
            if len(rel) != 3:
                continue
            for tag in files:
                if tag.startswith(_TMP_PREFIX):
                    continue
                host, ns, model = rel
                try:
                    yield parse_name(f"{host}/{ns}/{model}:{tag}"), Path(dirpath) / tag
                except InvalidName:  # a stray file that is no model name
                    logger.debug("skipping %s/%s/%s/%s", host, ns, model, tag)

    def list_models(self) -> list[ModelEntry]:
        """Every model in the store, newest first. Corrupt manifests are logged and skipped."""
        out: list[ModelEntry] = []
        for n, path in self._walk_manifests():
            try:
                m = Manifest.parse(path.read_bytes(), name=n.display)
            except StoreError as e:
                logger.warning("%s", e)
                continue
            out.append(ModelEntry(name=n, manifest=m, size=m.size,
                                  modified=path.stat().st_mtime, path=path))
        out.sort(key=lambda e: e.modified, reverse=True)
        return out

    def copy(self, src: str | ModelName, dst: str | ModelName) -> Manifest:
        m = self.resolve(src)
        return self.write_manifest(dst, m.raw)

    def delete(self, name: str | ModelName, *, prune: bool = True) -> Manifest:
        """Remove a model's manifest, then the blobs no other manifest uses."""
        n = _name(name)
        with self._lock:
            p = self._find_manifest(n)
            if p is None:
                raise ModelNotFound(n.display)
            try:
                m = Manifest.parse(p.read_bytes(), name=n.display)
            except StoreError:
                m = None  # a corrupt manifest can still be removed
            try:
                p.unlink()
            except OSError as e:
                raise _write_error(e, self.root) from e
            self._prune_dirs(p.parent)
            if prune and m is not None:
                used = self.referenced_digests()
                for layer in m.all_blobs():
                    if layer.digest not in used:
                        self.blob_path(layer.digest).unlink(missing_ok=True)
        return m  # type: ignore[return-value]

    def _prune_dirs(self, d: Path) -> None:
        while d != self.manifests_dir and d.is_relative_to(self.manifests_dir):
            try:
                d.rmdir()
            except OSError:
                break
            d = d.parent

    def referenced_digests(self) -> set[str]:
        used: set[str] = set()
        for n, path in self._walk_manifests():
            try:
                m = Manifest.parse(path.read_bytes(), name=n.display)
            except StoreError:
                # Unknown references: keep every blob the raw text mentions.
                text = path.read_bytes().decode("utf-8", "replace")
                for i in range(len(text)):
                    if text.startswith("sha256:", i) and len(text) >= i + 71:
                        used.add(text[i:i + 71])
                continue
            used.update(x.digest for x in m.all_blobs())
        return used

    def gc(self, *, stale_after: float = STALE_PARTIAL_SECONDS) -> list[Path]:
        """Remove unreferenced blobs and stale temp/partial files; return what was removed."""
        removed: list[Path] = []
        if not self.blobs_dir.is_dir():
            return removed
        now = time.time()
        with self._lock:
            removed += self.reclaim_temps(stale_after=stale_after)
            used = {check_digest(d) for d in self.referenced_digests()}
            for p in self.blobs_dir.iterdir():
                name = p.name
                if name.startswith(_TMP_PREFIX):
                    continue
                if "-partial" in name:
                    try:
                        if now - p.stat().st_mtime > stale_after:
                            p.unlink()
                            removed.append(p)
                    except FileNotFoundError:
                        pass
                    continue
                if name.startswith(("sha256-", "sha256:")) and len(name) == 71 and name[7:] not in used:
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed


_COPY_LAG = 16  # chunks the kernel copy may trail the hash by (offsets only: no memory)


def _kernel_copy(src_fd: int, out_fd: int, off: int, n: int) -> None:
    """Copy ``n`` bytes at ``off`` from ``src_fd`` to the same offset of ``out_fd`` in the kernel
    (``copy_file_range``, else ``sendfile``, else read/write)."""
    while n > 0:
        try:
            k = os.copy_file_range(src_fd, out_fd, n, off, off)
        except (AttributeError, OSError) as e:
            if isinstance(e, OSError) and e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                                          errno.EOPNOTSUPP):
                raise
            os.lseek(out_fd, off, os.SEEK_SET)
            try:
                k = os.sendfile(out_fd, src_fd, off, n)
            except OSError as e2:
                if e2.errno not in (errno.EINVAL, errno.ENOSYS):
                    raise
                data = os.pread(src_fd, min(n, CHUNK), off)
                k = os.write(out_fd, data) if data else 0
        if k == 0:
            raise StoreError("source file ended early while copying (was it truncated?)")
        off += k
        n -= k


def _pipelined_copy(fin: BinaryIO, out_fd: int,
                    progress: Callable[[int], None] | None) -> str:
    """Read ``fin`` once and hash it here, while a second thread copies each hashed range in
    the kernel from the page cache the hash just filled. Returns ``sha256:<hex>``.

    The disk is read once, no bytes cross into Python for the copy, both threads release
    the GIL, so the whole costs about one sha256 of the file. Memory: one 8 MiB buffer.
    """
    import queue

    src_fd = fin.fileno()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    h = hashlib.sha256()
    ranges: queue.Queue[tuple[int, int] | None] = queue.Queue(maxsize=_COPY_LAG)
    errors: list[BaseException] = []

    def copier() -> None:
        while (item := ranges.get()) is not None:
            if errors:
                continue
            try:
                _kernel_copy(src_fd, out_fd, *item)
            except BaseException as e:  # noqa: BLE001 (re-raised by the caller's thread)
                errors.append(e)

    worker = threading.Thread(target=copier, daemon=True, name="blob-copy")
    worker.start()
    off = 0
    try:
        while not errors:
            n = os.preadv(src_fd, [buf], off)
            if not n:
                break
            h.update(view[:n])
            ranges.put((off, n))
            off += n
            if progress:
                progress(n)
    finally:
        ranges.put(None)
        worker.join()
    if errors:
        raise errors[0]
    return "sha256:" + h.hexdigest()


def _name(name: str | ModelName) -> ModelName:
    return name if isinstance(name, ModelName) else parse_name(name)
