"""Verifying a bundle against its bundle.json, as a folder or an archive, and extracting one safely.

Both paths hash every listed file once and put each through the same check
(:func:`check_file`: size, then sha256); then each bundled model's manifest is checked against
its digest and the blobs it names (:func:`_check_models`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from runtime.bundle.archive import CHUNK, check_member, is_bundle_json_member, open_archive
from runtime.bundle.format import BUNDLE_JSON, BundleMeta, FileEntry
from runtime.errors import BundleError, DigestMismatch, UnsafeArchive
from runtime.fileio import ByteProgress, FileHash, sha256_file, sha256_stream
from runtime.progress import ProgressCallback, ProgressEvent


@dataclass
class VerifyReport:
    """What a successful verify saw."""

    bundle: BundleMeta
    files: int = 0
    bytes: int = 0
    models: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def version(self) -> str:
        return self.bundle.version


def check_file(rel: str, entry: FileEntry, got: FileHash) -> None:
    """The one check of a listed file's bytes: BundleError for the wrong size, DigestMismatch
    for the wrong sha256 (naming the file either way)."""
    if got.size != entry.size:
        raise BundleError(f"{rel}: size {got.size}, expected {entry.size} (truncated or modified)")
    if got.hex != entry.sha256:
        raise DigestMismatch("sha256:" + entry.sha256, got.digest, what=rel)


def _byte_progress(progress: ProgressCallback | None, path: Path, total: int) -> ByteProgress | None:
    """A byte counter that reports ``verifying <bundle>`` events (one bar for the whole bundle)."""
    if progress is None:
        return None
    done = 0

    def bump(n: int) -> None:
        nonlocal done
        done += n
        progress(ProgressEvent(status=f"verifying {path.name}", digest=path.name, total=total,
                               completed=done))
    return bump


def _check_models(meta: BundleMeta, read: Callable[[str], bytes]) -> dict[str, str]:
    """Each bundled model's manifest matches its digest and names only blobs the bundle holds."""
    files = meta.files
    models: dict[str, str] = {}
    for name, entry in sorted(meta.models.items()):
        rel = entry.manifest
        if rel not in files:
            raise BundleError(f"model {name}: manifest {rel} is not in the bundle")
        digest = "sha256:" + files[rel].sha256
        if entry.digest != digest:
            raise DigestMismatch(entry.digest or "?", digest, what=f"manifest of {name}")
        try:
            manifest = json.loads(read(rel))
            layers = [manifest["config"], *manifest.get("layers", [])]
        except (ValueError, KeyError, TypeError) as e:
            raise BundleError(f"model {name}: unreadable manifest: {e}") from e
        for layer in layers:
            blob = "models/blobs/" + str(layer.get("digest", "")).replace(":", "-", 1)
            if blob not in files:
                raise BundleError(f"model {name}: blob {layer.get('digest')} is not in the bundle")
            if files[blob].size != layer.get("size"):
                raise BundleError(f"model {name}: blob {layer.get('digest')} has the wrong size")
        models[name] = digest
    return models


def verify_dir(root: Path, *, progress: ProgressCallback | None = None, store: Path | None = None) -> VerifyReport:
    """Check every file of an extracted bundle against bundle.json; BundleError on the first problem.

    ``store``: a model store that an earlier install of this bundle moved the blobs into; a blob
    missing from the folder is then checked there instead (so install.sh can run again).
    """
    meta_path = root / BUNDLE_JSON
    if not meta_path.is_file():
        raise BundleError(f"{root}: not a bundle (no {BUNDLE_JSON})")
    try:
        meta = BundleMeta.from_json(json.loads(meta_path.read_bytes()))
    except ValueError as e:
        raise BundleError(f"{meta_path}: corrupt: {e}") from e
    files = meta.files
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
    report = VerifyReport(bundle=meta)
    bump = _byte_progress(progress, root, sum(e.size for e in files.values()))
    for rel in sorted(files):
        entry = files[rel]
        path = root / rel
        if rel not in seen:
            moved = store / "blobs" / rel.rsplit("/", 1)[1] if store and rel.startswith("models/blobs/") else None
            if moved is None or not moved.is_file():
                raise BundleError(f"missing file {rel} (bundle incomplete or truncated)")
            path = moved
        got = sha256_file(path, progress=bump)
        check_file(rel, entry, got)
        report.files += 1
        report.bytes += got.size
    report.models = _check_models(meta, lambda rel: (root / rel).read_bytes())
    return report


def verify_archive(path: Path, *, progress: ProgressCallback | None = None) -> VerifyReport:
    """Check a bundle tar (or volumes) member by member without extracting it."""
    tf = open_archive(path)
    small: dict[str, bytes] = {}
    try:
        first = tf.next()
        if first is None or not is_bundle_json_member(first):
            raise BundleError(f"{path}: bundle.json is not the first member (not a llmcrate bundle?)")
        top = first.name.split("/")[0]
        check_member(first, top)
        fh = tf.extractfile(first)
        assert fh is not None
        try:
            meta = BundleMeta.from_json(json.loads(fh.read()))
        except ValueError as e:
            raise BundleError(f"{path}: corrupt bundle.json: {e}") from e
        if top != meta.top:
            raise UnsafeArchive(first.name, f"top folder is not {meta.top}/")
        files = meta.files
        report = VerifyReport(bundle=meta)
        bump = _byte_progress(progress, path, sum(e.size for e in files.values()))
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
            data = tf.extractfile(member)
            assert data is not None
            if rel.startswith("models/manifests/"):
                raw = data.read()      # kept: the model checks below read it again
                small[rel] = raw
                got = FileHash(hashlib.sha256(raw).hexdigest(), len(raw))
                if bump:
                    bump(len(raw))
            else:
                got = sha256_stream(data, progress=bump, chunk=CHUNK)
            check_file(rel, files[rel], got)
            report.files += 1
            report.bytes += got.size
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


def verify_bundle(path: Path, *, progress: ProgressCallback | None = None,
                  store: Path | None = None) -> VerifyReport:
    """Verify a bundle folder, tar, compressed tar or split volumes.

    Args:
        path: the folder, archive, or any volume (or the base name) of a split bundle.
        progress: receives ``verifying <bundle>`` events while the bytes are hashed.
        store: see :func:`verify_dir`.
    """
    path = Path(path)
    if path.is_dir():
        return verify_dir(path, progress=progress, store=store)
    return verify_archive(path, progress=progress)


def safe_extract(path: Path, dest: Path) -> Path:
    """Verify and extract a bundle archive into ``dest``; returns the bundle folder.

    Refuses unsafe members before writing anything; extracts into a temp folder renamed at the end.
    """
    report = verify_archive(path)
    top = report.bundle.top
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
