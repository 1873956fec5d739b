"""Write a bundle: models, wheels, runtimes and scripts streamed into one reproducible tar.

Layout (DESIGN.md, "Bundle"): one top folder ``<name>-<version>/`` whose first member is
``bundle.json`` (sha256 + size of every other file). Weights are streamed from the store straight
into the archive (no temp copy; fixed buffers, so memory stays flat) and hashed on the way against
their digest. Members have fixed mtime (the spec's ``created``), owner and order, so the same spec
and inputs give the same bytes. The archive is written under a temp name and renamed at the end.
"""
from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import io
import logging
import os
import re
import shlex
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable, Literal

import jinja2

from bundler import wheels as wh
from bundler.spec import BundleSpec, ModelSpec
from runtime import __version__
from runtime.bundle.format import BUNDLE_FORMAT, BUNDLE_JSON, BundleMeta, FileEntry, ModelRecord
from runtime.errors import BundleError, DigestMismatch, LlmcrateError, ModelNotFound
from runtime.fileio import atomic_write, fsync_dir, sha256_file, sha256_stream
from runtime.models.names import ModelName, parse_name
from runtime.models.store import MEDIA_LICENSE, Manifest, Store
from runtime.progress import ProgressCallback, ProgressEvent
from runtime.transfer.sources import HUGGINGFACE, PullOptions, SourceRef, pull, resolve

logger = logging.getLogger(__name__)

Compression = Literal["none", "gz", "zst"]
CHUNK = 4 << 20
TEMPLATES = ("install.sh", "start.sh", "uninstall.sh", "llmcrate.service", "llmcrate.env", "README.txt")
EXECUTABLE = {"install.sh", "start.sh", "uninstall.sh"}


@dataclass(frozen=True)
class Entry:
    """One file of the bundle: where it goes, how big, its sha256, and how to read it."""

    arcname: str
    size: int
    sha256: str
    open: Callable[[], IO[bytes]]
    mode: int = 0o644
    check: bool = False      # sha256 is a claim (a store digest): verify it while streaming


def _bytes_entry(arcname: str, data: bytes, mode: int = 0o644) -> Entry:
    return Entry(arcname, len(data), hashlib.sha256(data).hexdigest(), lambda: io.BytesIO(data), mode)


def _raw_opener(path: Path) -> Callable[[], IO[bytes]]:
    """Opens ``path`` unbuffered when the tar writer reads it (the writer closes it)."""
    return lambda: open(path, "rb", buffering=0)


def _hashed_entry(arcname: str, size: int, opener: Callable[[], IO[bytes]], mode: int = 0o644) -> Entry:
    with opener() as fh:
        got = sha256_stream(fh, chunk=CHUNK)
    if got.size != size:
        raise BundleError(f"{arcname}: read {got.size} bytes, expected {size}")
    return Entry(arcname, size, got.hex, opener, mode)


def _file_entry(arcname: str, path: Path, mode: int = 0o644) -> Entry:
    return _hashed_entry(arcname, path.stat().st_size, lambda: open(path, "rb"), mode)


# ---------------------------------------------------------------------------------------------
# models
@dataclass(frozen=True)
class BundledModel:
    target: str            # full name on the target
    manifest: Manifest


def ensure_model(store: Store, m: ModelSpec, *, spec: BundleSpec,
                 progress: Callable[[str], None] | None = None) -> Manifest:
    """The model's manifest from the store, pulling or creating it first when the store lacks it."""
    say = progress or (lambda _s: None)
    if m.modelfile is not None:
        from runtime.models.create import create_model
        from runtime.models.modelfile import parse_modelfile
        mf = parse_modelfile(m.modelfile.read_text(), path=str(m.modelfile))
        # FROM may name a model above by its target name ("as:"): build from its source name.
        # Every FROM line counts (a projector is a second FROM), so each one is rewritten.
        for ins in [i for i in mf.instructions if i.command == "from"]:
            for other in spec.models:
                if other.ref and _same(other.target, ins.args.strip()):
                    source = resolve(other.ref, available=False)
                    # Hugging Face models are stored under their target name already
                    ins.args = other.target if source.source == HUGGINGFACE else str(source.parts)
        froms = [i.args for i in mf.instructions if i.command == "from"]
        mf.from_ = froms[-1] if froms else mf.from_
        say(f"creating {m.target} from {m.modelfile}")
        create_model(store, m.target, mf, base_dir=m.modelfile.parent)
        return store.resolve(m.target)
    assert m.ref is not None
    ref = resolve(m.ref, available=False)
    local = _store_name(ref, m.target)
    try:
        return store.resolve(local)  # in the store already: no network
    except ModelNotFound:
        pass
    say(f"pulling {m.ref}")
    return pull(store, ref, options=PullOptions(insecure=m.insecure, name=local))


def _store_name(ref: SourceRef, target: str) -> ModelName:
    """Where a pulled model lives in the store. Hugging Face pulls go under the bundle's target
    name (what an ``hf://`` file is called depends on the file the Hub resolves), so a later
    build finds them without the network; registry models keep their own name."""
    if ref.source == HUGGINGFACE or not isinstance(ref.parts, ModelName):
        return parse_name(target)
    return ref.parts


def _same(a: str, b: str) -> bool:
    try:
        return parse_name(a).key() == parse_name(b).key()
    except LlmcrateError:  # a FROM that is a file path is not a model name
        return False


def _display(name: str) -> str:
    return parse_name(name).display


# ---------------------------------------------------------------------------------------------
# templates
def _shquote(value: object) -> str:
    return shlex.quote(str(value))


def _envquote(value: object) -> str:
    """A value both systemd's EnvironmentFile and ``sh`` read back unchanged."""
    s = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./:,@+=-]*", s):
        return s
    return '"' + re.sub(r'([\\"$`])', r"\\\1", s) + '"'


def template_env() -> jinja2.Environment:
    """The jinja2 environment for generated files (StrictUndefined, ``shquote`` filter)."""
    here = Path(__file__).resolve().parent
    candidates = [here / "templates", here.parent / "templates"]
    folder = next((c for c in candidates if (c / "install.sh").is_file()), None)
    if folder is None:
        raise BundleError("llmcrate's templates are missing from this installation")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             autoescape=False)
    env.filters["shquote"] = _shquote
    env.filters["envquote"] = _envquote
    return env


def render_templates(context: dict[str, Any]) -> dict[str, bytes]:
    """Render every generated file of a bundle from ``context``."""
    env = template_env()
    try:
        return {name: env.get_template(name).render(**context).encode() for name in TEMPLATES}
    except jinja2.TemplateError as e:
        raise BundleError(f"template error: {e}") from e


def template_context(spec: BundleSpec, *, models: list[BundledModel], runtimes: dict[str, Any],
                     llmcrate_wheel: str) -> dict[str, Any]:
    from runtime.config import parse_host
    addr = parse_host(spec.service.host)
    smoke = min(models, key=lambda m: m.manifest.size).target if models else ""
    return {
        "name": spec.name, "version": spec.version, "top": spec.top, "tool_version": __version__,
        "arch": spec.arch, "python": list(spec.python), "platform": spec.platform,
        "models": [{"name": _display(m.target), "size": m.manifest.size,
                    "digest": m.manifest.digest} for m in models],
        "smoke_model": _display(smoke) if smoke else "",
        "runtimes": runtimes, "llmcrate_wheel": llmcrate_wheel,
        "service": {"host": str(addr), "port": addr.port, "keep_alive": spec.service.keep_alive,
                    "num_parallel": spec.service.num_parallel,
                    "max_loaded_models": spec.service.max_loaded_models,
                    "context_length": spec.service.context_length, "env": dict(spec.service.env)},
    }


# ---------------------------------------------------------------------------------------------
# output sinks
class _SplitWriter(io.RawIOBase):
    """Writes ``<base>.000``, ``<base>.001`` ... of at most ``size`` bytes each."""

    def __init__(self, base: Path, size: int) -> None:
        self.base, self.size = base, size
        self.paths: list[Path] = []
        self._fh: BinaryIO | None = None
        self._left = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        done = 0
        while done < len(view):
            if self._fh is None or self._left == 0:
                self._roll()
            assert self._fh is not None
            n = min(self._left, len(view) - done)
            self._fh.write(view[done:done + n])
            self._left -= n
            done += n
        return done

    def _roll(self) -> None:
        self._close_one()
        p = self.base.with_name(f"{self.base.name}.{len(self.paths):03d}")
        self.paths.append(p)
        self._fh = open(p, "wb")  # noqa: SIM115 (one volume after another; _close_one closes it)
        self._left = self.size

    def _close_one(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def close(self) -> None:
        self._close_one()
        super().close()


class _Sink:
    """Where tar bytes go: a file, through gzip/zstd, split into volumes; counts and finalizes."""

    def __init__(self, final: Path, compression: Compression, split: int | None) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
        self.split = split
        if split:
            self.raw: Any = _SplitWriter(self.tmp, split)
        else:
            self.raw = open(self.tmp, "wb")  # noqa: SIM115 (the writer's lifetime; close() closes it)
        self.comp: Any = None
        if compression == "gz":
            self.comp = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0, compresslevel=6)
        elif compression == "zst":
            try:
                import zstandard
            except ImportError as e:
                raise BundleError("--compress zst needs the zstandard package (pip install zstandard)") from e
            self.comp = zstandard.ZstdCompressor(level=3).stream_writer(self.raw, closefd=False)
        self.out = self.comp or self.raw

    def write(self, data: Any) -> None:
        self.out.write(data)

    def fileno(self) -> int | None:
        """The output file's descriptor when bytes go to it unchanged (no compression, one file)."""
        if self.comp is not None or isinstance(self.raw, _SplitWriter) or not hasattr(os, "copy_file_range"):
            return None
        return int(self.raw.fileno())

    def finish(self) -> list[Path]:
        if self.comp is not None:
            self.comp.close()  # ends the gzip member / zstd frame; the file below stays open
        if isinstance(self.raw, _SplitWriter):
            self.raw.close()
            finals = []
            lines = []
            for i, p in enumerate(self.raw.paths):
                dst = self.final.with_name(f"{self.final.name}.{i:03d}")
                os.replace(p, dst)
                finals.append(dst)
                lines.append(f"{sha256_file(dst).hex}  {dst.name}\n")
            atomic_write(self.final.with_name(f"{self.final.name}.volumes"), "".join(lines).encode())
            return finals
        self.raw.flush()
        os.fsync(self.raw.fileno())
        self.raw.close()
        os.replace(self.tmp, self.final)
        fsync_dir(self.final.parent)
        return [self.final]

    def abort(self) -> None:
        try:
            self.raw.close()
        except (OSError, ValueError):  # best effort while already failing
            pass
        paths = self.raw.paths if isinstance(self.raw, _SplitWriter) else [self.tmp]
        for p in paths:
            if p.exists():
                p.unlink()


# ---------------------------------------------------------------------------------------------
# tar writing
class TarStreamer:
    """Writes pax members with fixed metadata; data copied in large chunks, hashed alongside.

    Only regular files: folders are implied by paths (every tar creates them), which keeps
    bundle.json the very first member.
    """

    def __init__(self, sink: _Sink, *, top: str, mtime: int, rehash: bool = True) -> None:
        self.sink, self.top, self.mtime, self.rehash = sink, top, mtime, rehash
        self.bytes = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._bufs = (bytearray(CHUNK), bytearray(CHUNK))

    def _header(self, name: str, size: int, mode: int, kind: bytes) -> None:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime, ti.type = size, mode, self.mtime, kind
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        buf = ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        self.sink.write(buf)
        self.bytes += len(buf)

    def add(self, entry: Entry, progress: Callable[[int], None] | None = None) -> None:
        self._header(f"{self.top}/{entry.arcname}", entry.size, entry.mode, tarfile.REGTYPE)
        if entry.check and not self.rehash and self.sink.fileno() is not None:
            self._copy_in_kernel(entry)
            if progress:
                progress(entry.size)
            return
        h = hashlib.sha256()
        left = entry.size
        pending: concurrent.futures.Future[None] | None = None
        i = 0
        with entry.open() as fh:
            readinto = getattr(fh, "readinto", None)
            while left:
                buf = self._bufs[i]
                view = memoryview(buf)[:min(CHUNK, left)]
                n = readinto(view) if readinto else _read_into(fh, view)
                if not n:
                    raise BundleError(f"{entry.arcname}: source ended {left} bytes early (file changed?)")
                chunk = view[:n]
                if pending is not None:
                    pending.result()
                pending = self._pool.submit(h.update, chunk)  # hash (GIL released) while writing
                self.sink.write(chunk)
                left -= n
                i ^= 1
                if progress:
                    progress(n)
            if pending is not None:
                pending.result()
            if fh.read(1):
                raise BundleError(f"{entry.arcname}: source is larger than {entry.size} bytes (file changed?)")
        pad = (-entry.size) % tarfile.BLOCKSIZE
        if pad:
            self.sink.write(b"\0" * pad)
        self.bytes += entry.size + pad
        if h.hexdigest() != entry.sha256:
            raise DigestMismatch("sha256:" + entry.sha256, "sha256:" + h.hexdigest(), what=entry.arcname)

    def _copy_in_kernel(self, entry: Entry) -> None:
        """A store blob trusted as is (its name is its digest, checked when it entered the store):
        copied file to file by the kernel, never through Python's memory."""
        out = self.sink.fileno()
        assert out is not None
        self.sink.raw.flush()
        with entry.open() as fh:
            left = entry.size
            while left:
                n = os.copy_file_range(fh.fileno(), out, min(left, 1 << 30))
                if n == 0:
                    raise BundleError(f"{entry.arcname}: source ended {left} bytes early (file changed?)")
                left -= n
        pad = (-entry.size) % tarfile.BLOCKSIZE
        if pad:
            self.sink.write(b"\0" * pad)
        self.bytes += entry.size + pad

    def close(self) -> None:
        end = b"\0" * (tarfile.BLOCKSIZE * 2)
        self.sink.write(end)
        self.bytes += len(end)
        rem = (-self.bytes) % tarfile.RECORDSIZE
        if rem:
            self.sink.write(b"\0" * rem)
        self._pool.shutdown()


def _read_into(fh: IO[bytes], view: memoryview) -> int:
    data = fh.read(len(view))
    view[:len(data)] = data
    return len(data)


# ---------------------------------------------------------------------------------------------
# the build
@dataclass(frozen=True)
class BuildResult:
    paths: list[Path]
    bundle: BundleMeta      # what was written as bundle.json


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def output_path(spec: BundleSpec, out: Path | None, compression: Compression) -> Path:
    suffix = {"none": ".tar", "gz": ".tar.gz", "zst": ".tar.zst"}[compression]
    default = f"{spec.top}{suffix}"
    if out is None:
        return Path.cwd() / default
    return out / default if out.is_dir() else out


def build_bundle(spec: BundleSpec, *, store: Store, out: Path | None = None,
                 compression: Compression = "none", split: int | None = None, rehash: bool = True,
                 progress: Callable[[str], None] | None = None,
                 events: ProgressCallback | None = None) -> BuildResult:
    """Build the bundle ``spec`` describes; returns the written file(s) and bundle.json.

    Args:
        spec: the validated spec.
        store: the local model store (models it lacks are pulled or created into it).
        out: output file or folder (default ``./<name>-<version>.tar[.gz|.zst]``).
        compression: none (default: weights do not compress), gz or zst.
        split: volume size in bytes, or None for one file.
        rehash: check every store blob against its digest while streaming it (default). False
            trusts the store (blobs were verified when they entered it) and lets the kernel copy
            them, which is as fast as ``tar -cf``; the target's verify still checks every byte.
        progress: receives one-line status messages.
        events: receives byte progress while the tar is written (``ProgressEvent`` with the
            archive's name as ``digest``, ``total`` and ``completed`` bytes), for a progress bar.
    """
    say = progress or (lambda _s: None)
    final = output_path(spec, out, compression)
    final.parent.mkdir(parents=True, exist_ok=True)
    models = [BundledModel(m.target, ensure_model(store, m, spec=spec, progress=say)) for m in spec.models]
    with tempfile.TemporaryDirectory(prefix=".llmcrate-build-", dir=final.parent) as work:
        say("collecting wheels")
        house = wh.build_wheelhouse(spec, Path(work))
        entries, bundle = _collect(spec, store, models, house)
        say(f"writing {final.name} ({sum(e.size for e in entries) / 1e6:.1f} MB)")
        sink = _Sink(final, compression, split)
        try:
            tw = TarStreamer(sink, top=spec.top, mtime=spec.created, rehash=rehash)
            tw.add(_bytes_entry(BUNDLE_JSON, bundle.dumps()))
            total, done = sum(e.size for e in entries), 0

            def bump(n: int) -> None:
                nonlocal done
                done += n
                if events:
                    events(ProgressEvent(status=f"writing {final.name}", digest=final.name,
                                         total=total, completed=done))

            for e in entries:
                tw.add(e, progress=bump)
            tw.close()
            paths = sink.finish()
        except BaseException:
            sink.abort()
            raise
    return BuildResult(paths=paths, bundle=bundle)


def _collect(spec: BundleSpec, store: Store, models: list[BundledModel],
             house: wh.Wheelhouse) -> tuple[list[Entry], BundleMeta]:
    wheel_entries = [_file_entry(f"wheels/{w.name}", w) for w in house.wheels]
    licenses: list[Entry] = []
    seen_licenses: set[str] = set()
    for w in house.wheels:  # one project may come as several wheels (one per target Python)
        for fname, data in wh.wheel_licenses(w):
            arc = f"LICENSES/wheels/{wh.dist_of(w)}/{fname}"
            if arc not in seen_licenses:
                seen_licenses.add(arc)
                licenses.append(_bytes_entry(arc, data))
    runtime_entries: list[Entry] = []
    runtimes: dict[str, Any] = {}
    for rt in spec.runtimes:
        libs = wh.runtime_libs(rt, house.runtime_wheels[rt.name])
        libs += wh.gpu_support_libs(rt, python=spec.python[-1], platform_tag=spec.platform)
        seen = set()
        for lib in libs:
            if lib.name in seen:
                continue
            seen.add(lib.name)
            runtime_entries.append(_hashed_entry(f"runtimes/{rt.name}/{lib.name}", lib.size, lib.open, 0o755))
        source = {"build": "source build", "wheel": "wheel", "index": "wheel index",
                  "installed": "installed package"}[rt.kind]
        facts: dict[str, Any] = {"source": source, **dict(rt.facts)}
        if rt.kind == "build":
            facts["cmake_args"] = rt.cmake_args
        # portable: built with GGML_NATIVE=OFF; unknown (None) for prebuilt wheels
        facts["portable"] = ("GGML_NATIVE=OFF" in rt.cmake_args) if rt.kind == "build" else None
        runtimes[rt.name] = facts
    model_entries: list[Entry] = []
    blob_entries: dict[str, Entry] = {}
    models_meta: dict[str, ModelRecord] = {}
    for m in models:
        rel = "models/" + parse_name(m.target).manifest_relpath().as_posix()
        raw = m.manifest.raw
        model_entries.append(_bytes_entry(rel, raw))
        models_meta[_display(m.target)] = ModelRecord(name=m.target, manifest=rel, digest=m.manifest.digest,
                                                      size=m.manifest.size)
        for i, layer in enumerate(m.manifest.all_blobs()):
            path = store.blob_path(layer.digest)
            if not path.is_file():
                raise BundleError(f"model {_display(m.target)}: blob {layer.digest} is missing from the store")
            if path.stat().st_size != layer.size:
                raise BundleError(f"model {_display(m.target)}: blob {layer.digest} has the wrong size in "
                                  "the store (corrupt or still downloading)")
            arc = "models/blobs/" + layer.digest.replace(":", "-", 1)
            blob_entries[arc] = Entry(arc, layer.size, layer.digest.split(":", 1)[1],
                                      _raw_opener(path), 0o644, check=True)
            if layer.media_type == MEDIA_LICENSE:
                licenses.append(_bytes_entry(f"LICENSES/models/{_safe(_display(m.target))}/LICENSE-{i}.txt",
                                             store.read_blob(layer.digest)))
    context = template_context(spec, models=models, runtimes=runtimes,
                               llmcrate_wheel=next(w.name for w in house.wheels if wh.dist_of(w) == "llmcrate"))
    rendered = render_templates(context)
    script_entries = [_bytes_entry(n, rendered[n], 0o755 if n in EXECUTABLE else 0o644) for n in TEMPLATES]
    entries = (script_entries + sorted(licenses, key=lambda e: e.arcname) + wheel_entries
               + sorted(runtime_entries, key=lambda e: e.arcname) + sorted(model_entries, key=lambda e: e.arcname)
               + [blob_entries[k] for k in sorted(blob_entries)])
    names = [e.arcname for e in entries]
    if len(names) != len(set(names)):
        dup = next(n for n in names if names.count(n) > 1)
        raise BundleError(f"two bundle files would be named {dup}")
    bundle = BundleMeta(
        format=BUNDLE_FORMAT, name=spec.name, version=spec.version, created=spec.created,
        created_iso=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(spec.created)),
        tool={"name": "llmcrate", "version": __version__},
        arch=spec.arch, platform=spec.platform, glibc_min=wh.glibc_min(house.wheels),
        python=list(spec.python), pip=dict(house.pip), llmcrate_wheel=context["llmcrate_wheel"],
        models=models_meta, runtimes=runtimes, service=context["service"],
        files={e.arcname: FileEntry(sha256=e.sha256, size=e.size) for e in entries},
    )
    return entries, bundle


def parse_size(text: str) -> int:
    """``4G``, ``700M``, ``1.5GB``, ``4GiB`` -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if not m:
        raise BundleError(f"invalid size {text!r} (e.g. 4G, 700M)")
    n = int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()])
    if n < 1 << 20:
        raise BundleError(f"volume size {text!r} is too small (1M at least)")
    return n
