"""Ranged, parallel, resumable blob downloads, verified while they stream.

A blob is fetched into ``<store>/blobs/sha256-<hex>-partial`` in parts (like Ollama: up to 16
parts of 100 MB–1 GB, here configurable through :class:`PullSettings`). Progress is recorded in
a small state file next to it, ``<partial>.json``::

    {"version": 1, "digest": "sha256:…", "total": N,
     "parts": [{"offset": 0, "size": S, "completed": C}, …]}

so a pull that was killed, lost its connection or hit Ctrl-C resumes where it stopped (the state
only ever under-reports what is on disk: it is saved from the counters, which move after each
write). Each part retries with exponential backoff and jitter; a part that made progress gets its
retry budget back, so a flaky link that drops every few MB still finishes. A read that sees no
byte for ``stall_timeout`` seconds counts as a stall and is retried.

The sha256 is computed by a hasher thread that follows the contiguous "frontier" of finished
bytes, reading them back from the page cache while the parts are still downloading; when the
last byte lands only the tail is left to hash. The partial file is ``flock``-ed, so two pulls
(two processes, or two requests in one server) never write the same blob at once: the second
waits and then finds the blob in the store.

This module knows nothing about HTTP: the caller passes ``open_range(start, end)``, a context
manager yielding the body chunks of that inclusive byte range, which raises :class:`Transient`
for failures worth retrying and a :class:`~runtime.errors.LlmcrateError` for the others.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from runtime.errors import ConfigError, RegistryError, StoreError
from runtime.fileio import disk_error

logger = logging.getLogger(__name__)

MB = 1000 * 1000  # Ollama's format.MegaByte
_STATE_VERSION = 1
_HASH_CHUNK = 8 << 20
_SYNC_EVERY = 1.0  # seconds between background fdatasync calls while downloading

RangeOpener = Callable[[int, int], AbstractContextManager[Iterable[bytes]]]


class Transient(Exception):
    """A failed request that is worth retrying (network error, 5xx, stall, short body)."""

    def __init__(self, message: str, *, reresolve: bool = False) -> None:
        super().__init__(message)
        #: the direct (CDN) URL may have expired: resolve it again before the next try
        self.reresolve = reresolve


@dataclass(frozen=True)
class PullSettings:
    """How pulls download. Defaults follow Ollama (16 parts of 100 MB–1 GB, 6 retries)."""

    max_parts: int = 16
    min_part_size: int = 100 * MB
    max_part_size: int = 1000 * MB
    retries: int = 6
    backoff: float = 1.0             # seconds before the first retry; doubles each time
    max_backoff: float = 30.0
    stall_timeout: float = 30.0      # no byte for this long = stalled part, retried
    connect_timeout: float = 30.0
    bandwidth_limit: int | None = None   # bytes per second over all parts; None = unlimited
    state_interval: float = 0.1      # seconds between saves of the resume state
    verify_existing: bool = True     # re-hash blobs already in the store before skipping them
    mirrors: Mapping[str, str] = field(default_factory=dict)  # registry host -> base URL
    username: str | None = None      # basic credentials sent to a token realm, if any
    password: str | None = None

    def __post_init__(self) -> None:
        if self.max_parts < 1:
            raise ConfigError("parts", "must be at least 1")
        if self.min_part_size < 1 or self.max_part_size < self.min_part_size:
            raise ConfigError("part size", "need 1 <= min_part_size <= max_part_size")
        if self.retries < 0:
            raise ConfigError("retries", "must not be negative")
        if self.stall_timeout <= 0 or self.connect_timeout <= 0:
            raise ConfigError("timeout", "must be positive")
        if self.bandwidth_limit is not None and self.bandwidth_limit < 1024:
            raise ConfigError("bandwidth limit", "must be at least 1 KB/s")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> PullSettings:
        """``LLMCRATE_PULL_PARTS``, ``_RETRIES``, ``_STALL_TIMEOUT`` (a duration),
        ``_LIMIT_RATE`` (e.g. ``10M``) and ``LLMCRATE_REGISTRY_MIRRORS``
        (``registry.ollama.ai=http://10.0.0.5:5000,…``); keyword overrides win."""
        from runtime.config import parse_duration

        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if v := env.get("LLMCRATE_PULL_PARTS"):
            values["max_parts"] = _int("LLMCRATE_PULL_PARTS", v)
        if v := env.get("LLMCRATE_PULL_RETRIES"):
            values["retries"] = _int("LLMCRATE_PULL_RETRIES", v)
        if v := env.get("LLMCRATE_PULL_STALL_TIMEOUT"):
            values["stall_timeout"] = parse_duration(v, key="LLMCRATE_PULL_STALL_TIMEOUT")
        if v := env.get("LLMCRATE_PULL_LIMIT_RATE"):
            values["bandwidth_limit"] = parse_rate(v)
        if v := env.get("LLMCRATE_REGISTRY_MIRRORS"):
            mirrors = {}
            for item in v.split(","):
                host, sep, url = item.strip().partition("=")
                if not sep or not host or not url.startswith(("http://", "https://")):
                    raise ConfigError("LLMCRATE_REGISTRY_MIRRORS",
                                      f'"{item}" is not host=http(s)://mirror')
                mirrors[host.strip().lower()] = url.strip().rstrip("/")
            values["mirrors"] = mirrors
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _int(key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(key, f'"{text}" is not a whole number') from None


def parse_rate(text: str) -> int:
    """``"500K"``, ``"10M"``, ``"1.5G"`` (bytes per second, curl's --limit-rate units) -> int."""
    t = text.strip().upper().removesuffix("/S").removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if t[-1:] in "KMG" else t)
    except ValueError:
        raise ConfigError("limit rate", f'"{text}" is not a rate like 500K, 10M or 1G') from None
    if value <= 0:
        raise ConfigError("limit rate", "must be positive")
    return int(value * mult)


@dataclass
class Part:
    offset: int
    size: int
    completed: int = 0

    @property
    def done(self) -> bool:
        return self.completed >= self.size


def plan_parts(total: int, settings: PullSettings) -> list[Part]:
    """Split ``total`` bytes like Ollama: total/parts, clamped to [min, max] part size."""
    if total <= 0:
        return [Part(0, 0)]
    size = min(max(total // settings.max_parts, settings.min_part_size), settings.max_part_size)
    parts, offset = [], 0
    while offset < total:
        n = min(size, total - offset)
        parts.append(Part(offset, n))
        offset += n
    return parts


def state_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def _load_state(path: Path, digest: str, total: int) -> list[Part] | None:
    try:
        doc = json.loads(path.read_text())
        if doc.get("version") != _STATE_VERSION or doc.get("digest") != digest \
                or doc.get("total") != total:
            return None
        parts = [Part(int(p["offset"]), int(p["size"]), int(p["completed"])) for p in doc["parts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # the parts must tile [0, total) exactly, or the state is not ours to trust
    pos = 0
    for p in parts:
        if p.offset != pos or p.size < 0 or not 0 <= p.completed <= p.size:
            return None
        pos += p.size
    return parts if pos == total else None


def _save_state(path: Path, digest: str, total: int, parts: list[Part]) -> None:
    doc = {"version": _STATE_VERSION, "digest": digest, "total": total,
           "parts": [{"offset": p.offset, "size": p.size, "completed": p.completed} for p in parts]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def discard_partial(partial: Path) -> None:
    """Remove a partial blob and its state file."""
    for p in (partial, state_path(partial)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def resumable_bytes(partial: Path, digest: str, total: int) -> int:
    """How many bytes of ``digest`` a previous run left on disk (0 when none)."""
    parts = _load_state(state_path(partial), digest, total)
    return sum(p.completed for p in parts) if parts else 0


class RateLimiter:
    """A token bucket shared by every part of every blob of one pull."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def consume(self, n: int) -> None:
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now - 0.25)  # allow a small burst, never a backlog
            self._next = start + n / self.rate
            delay = self._next - now
        if delay > 0:
            time.sleep(delay)


class _PartQueue:
    """Pending parts handed out in file order, so the in-order hasher keeps up."""

    def __init__(self, parts: list[Part]) -> None:
        self._items = list(enumerate(parts))
        self._lock = threading.Lock()

    def next(self) -> tuple[Part, int] | None:
        with self._lock:
            if not self._items:
                return None
            n, part = self._items.pop(0)
            return part, n


class ConnectionRamp:
    """How many connections a blob gets: start with one and add one each ``interval`` while
    the last addition brought at least ``gain`` of what an average connection carries (a CDN
    that throttles each connection: up to ``limit``, Ollama's 16); stop adding once it did
    not (a LAN mirror or loopback, where more connections only compete for the CPU)."""

    def __init__(self, *, limit: int, interval: float = 1.0, gain: float = 0.5) -> None:
        self.limit = limit
        self.interval = interval
        self.gain = gain
        self.workers = 1
        self._mark: tuple[float, int] | None = None
        self._last: tuple[int, float] | None = None  # (workers, rate) of the last interval
        self._frozen = limit <= 1

    def observe(self, now: float, completed: int) -> bool:
        """Feed the clock and the bytes done so far; True means: start one more connection."""
        if self._frozen:
            return False
        if self._mark is None:
            self._mark = (now, completed)
            return False
        t0, c0 = self._mark
        if now - t0 < self.interval:
            return False
        rate = (completed - c0) / (now - t0)
        self._mark = (now, completed)
        if self._last is not None:
            n, last_rate = self._last
            per_connection = last_rate / n
            if rate - last_rate < self.gain * per_connection:
                self._frozen = True  # the last connection did not pay: keep what we have
                return False
        self._last = (self.workers, rate)
        if self.workers >= self.limit:
            self._frozen = True
            return False
        self.workers += 1
        return True


class BlobDownload:
    """Download one blob of known digest and size into ``partial``; see the module docstring."""

    def __init__(self, *, partial: Path, digest: str, total: int, open_range: RangeOpener,
                 settings: PullSettings, limiter: RateLimiter | None = None,
                 label: str = "") -> None:
        if total < 0:          # a forged size; the manifest parser refuses these first
            raise StoreError(f"blob {digest[:19]} has an impossible size {total}")
        self.partial = partial
        self.digest = digest
        self.total = total
        self.open_range = open_range
        self.settings = settings
        self.limiter = limiter or RateLimiter(settings.bandwidth_limit)
        self.label = label or digest.split(":")[-1][:12]
        self.parts: list[Part] = []
        self.resumed_from = 0
        self._cancel = threading.Event()
        self._fd = -1

    @property
    def completed(self) -> int:
        return sum(p.completed for p in self.parts)

    def run(self, on_progress: Callable[[int, int], None] | None = None, *,
            keep_lock: bool = False) -> str | None:
        """Download, returning the sha256 of what landed (``sha256:<hex>``), or None when
        another pull finished the same blob while this one waited for it.

        With ``keep_lock`` the partial stays locked after a successful download until
        :meth:`release`, so the caller can verify and move it into the store before any other
        pull may look at it.
        """
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open_locked()
        if fd is None:
            return None
        self._fd = fd
        ok = False
        try:
            self._prepare()
            if on_progress:
                on_progress(self.completed, self.total)
            digest = self._download(on_progress)
            ok = True
            return digest
        except OSError as e:
            raise disk_error(e, self.partial.parent) from e
        finally:
            if not (ok and keep_lock):
                self.release()

    def release(self) -> None:
        """Close the partial file, which also releases its lock."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _open_locked(self) -> int | None:
        waited = False
        while True:
            fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    logger.info("%s: another pull is downloading this blob; waiting", self.label)
                    waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            # The holder may have finished and renamed the partial into the store meanwhile:
            # then this fd is the stored blob (or an unlinked file) and must not be touched.
            try:
                same = os.stat(self.partial).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)
            if waited:
                return None

    def _prepare(self) -> None:
        spath = state_path(self.partial)
        parts = _load_state(spath, self.digest, self.total)
        if parts is not None and os.fstat(self._fd).st_size == self.total:
            self.resumed_from = sum(p.completed for p in parts)
            if self.resumed_from:
                logger.info("%s: resuming at %d of %d bytes", self.label, self.resumed_from, self.total)
        else:
            parts = plan_parts(self.total, self.settings)
            os.ftruncate(self._fd, 0)
            os.ftruncate(self._fd, self.total)  # sparse: parts write at their offsets
            _save_state(spath, self.digest, self.total, parts)
        self.parts = parts
        n = len(parts)
        logger.debug("%s: %d part(s) of %d bytes", self.label, n, parts[0].size if parts else 0)

    def _download(self, on_progress: Callable[[int, int], None] | None) -> str:
        spath = state_path(self.partial)
        hasher = _FrontierHasher(self._fd, self.parts, self.total)
        hasher.start()
        syncer = _Syncer(self._fd)
        syncer.start()
        pending = [p for p in self.parts if not p.done]
        error: BaseException | None = None
        try:
            if pending:
                limit = min(self.settings.max_parts, len(pending))
                with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="pull") as pool:
                    work = _PartQueue(pending)
                    ramp = ConnectionRamp(limit=limit)
                    futures = [pool.submit(self._worker, work)]
                    error = self._supervise(futures, spath, on_progress,
                                            more=lambda: pool.submit(self._worker, work), ramp=ramp)
        except BaseException as e:  # noqa: BLE001 (KeyboardInterrupt included: save what we have first)
            self._cancel.set()
            error = e
        finally:
            syncer.stop()
            _save_state(spath, self.digest, self.total, self.parts)
        if error is not None:
            hasher.stop()
            raise error
        if on_progress:
            on_progress(self.completed, self.total)
        digest = hasher.result()
        os.fsync(self._fd)
        return digest

    def _worker(self, work: _PartQueue) -> None:
        """Fetch parts in order until none is left (several workers share one queue)."""
        while not self._cancel.is_set():
            item = work.next()
            if item is None:
                return
            self._fetch_part(*item)

    def _supervise(self, futures: list[Future[None]], spath: Path,
                   on_progress: Callable[[int, int], None] | None, *,
                   more: Callable[[], Future[None]] | None = None,
                   ramp: ConnectionRamp | None = None) -> BaseException | None:
        last_save = time.monotonic()
        not_done = set(futures)
        try:
            while not_done:
                done, not_done = wait(not_done, timeout=0.1, return_when=FIRST_EXCEPTION)
                for f in done:
                    exc = f.exception()
                    if exc is not None:
                        self._cancel.set()
                        for other in not_done:
                            other.cancel()
                        wait(not_done)
                        return exc
                if more is not None and ramp is not None and not_done and \
                        ramp.observe(time.monotonic(), self.completed):
                    not_done.add(more())
                if on_progress:
                    on_progress(self.completed, self.total)
                if time.monotonic() - last_save >= self.settings.state_interval:
                    _save_state(spath, self.digest, self.total, self.parts)
                    last_save = time.monotonic()
        except BaseException:
            self._cancel.set()
            for other in not_done:
                other.cancel()
            wait(not_done)
            raise
        return None

    def _fetch_part(self, part: Part, n: int) -> None:
        attempt = 0
        s = self.settings
        while not part.done:
            if self._cancel.is_set():
                return
            start = part.offset + part.completed
            end = part.offset + part.size - 1
            before = part.completed
            try:
                with self.open_range(start, end) as chunks:
                    for chunk in chunks:
                        if self._cancel.is_set():
                            return
                        room = part.size - part.completed
                        if len(chunk) > room:
                            chunk = chunk[:room]
                        self.limiter.consume(len(chunk))
                        os.pwrite(self._fd, chunk, part.offset + part.completed)
                        part.completed += len(chunk)
                        if part.done:
                            break
                if not part.done:
                    raise Transient(f"connection closed after {part.completed - before} of "
                                    f"{end - start + 1} bytes (truncated body)")
            except Transient as e:
                if part.completed > before:
                    attempt = 0  # progress earns the retry budget back
                attempt += 1
                if attempt > s.retries:
                    raise RegistryError(f"downloading {self.label} failed ({attempt} attempt"
                                        f"{'s' if attempt > 1 else ''} in a row): {e}") from e
                delay = min(s.backoff * 2 ** (attempt - 1), s.max_backoff) * random.uniform(0.5, 1.5)
                logger.info("%s part %d: %s; retry %d/%d in %.1fs", self.label, n, e, attempt,
                            s.retries, delay)
                if self._cancel.wait(delay):
                    return


class _Syncer(threading.Thread):
    """Write the partial file back while it downloads. A multi-GB blob stays below the kernel's
    background-writeback threshold on big-memory hosts, so without this the final fsync would
    flush gigabytes after the last byte arrived; with it, writeback overlaps the download."""

    def __init__(self, fd: int) -> None:
        super().__init__(name="pull-sync", daemon=True)
        self.fd = fd
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.wait(_SYNC_EVERY):
            try:
                os.fdatasync(self.fd)
            except OSError:  # reported by the final fsync, if it matters
                return

    def stop(self) -> None:
        self._stop_evt.set()
        self.join()


class _FrontierHasher(threading.Thread):
    """Hash the blob in order while it downloads, reading finished bytes back from the file."""

    def __init__(self, fd: int, parts: list[Part], total: int) -> None:
        super().__init__(name="pull-hash", daemon=True)
        self.fd = fd
        self.parts = parts
        self.total = total
        self.pos = 0
        self.sha = hashlib.sha256()
        self._stop_evt = threading.Event()
        self._error: BaseException | None = None

    def frontier(self) -> int:
        for p in self.parts:
            if not p.done:
                return p.offset + p.completed
        return self.total

    def run(self) -> None:
        buf = bytearray(_HASH_CHUNK)  # reused: no fresh 8 MB object per read
        view = memoryview(buf)
        try:
            while self.pos < self.total and not self._stop_evt.is_set():
                limit = self.frontier()
                if self.pos >= limit:
                    self._stop_evt.wait(0.02)
                    continue
                n = min(_HASH_CHUNK, limit - self.pos)
                got = os.preadv(self.fd, [view[:n]], self.pos)
                if not got:
                    raise StoreError("partial blob shrank while downloading")
                self.sha.update(view[:got])
                self.pos += got
        except BaseException as e:  # noqa: BLE001 (reported through result())
            self._error = e

    def stop(self) -> None:
        self._stop_evt.set()
        self.join()

    def result(self) -> str:
        self.join()
        if self._error is not None:
            raise self._error
        return "sha256:" + self.sha.hexdigest()
