"""``bundle.json``, the bundle's table of contents, as one typed dataclass both sides use.

``bundler.pack`` builds a :class:`BundleMeta` and writes :meth:`BundleMeta.dumps` as the first
tar member; the target reads it back with :meth:`BundleMeta.from_json`, which validates it
(BundleError / UnsafeArchive with the messages install.sh users see). Keys this version does not
know are kept in ``extra`` and written back, so a newer bundle.json round-trips unchanged.

    {"format": 1, "name": "demo", "version": "1.0",
     "files": {"wheels/x.whl": {"sha256": "<64 hex>", "size": 123}, ...},
     "models": {"tiny:latest": {"name": ..., "manifest": "models/manifests/...", "digest": "sha256:...",
                                "size": N}},
     "arch": "x86_64", "platform": ..., "glibc_min": [2, 28], "python": ["3.11"], "pip": {...},
     "runtimes": {"cpu": {...}}, "service": {...}, "tool": {...}, "created": 0, "created_iso": ...}
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from runtime.errors import BundleError, UnsafeArchive

BUNDLE_FORMAT = 1
BUNDLE_JSON = "bundle.json"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def check_relpath(rel: str) -> None:
    """UnsafeArchive unless ``rel`` is a relative path that stays inside the bundle folder."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or rel in ("", ".") or "\\" in rel:
        raise UnsafeArchive(rel, "path leaves the bundle")


@dataclass(frozen=True)
class FileEntry:
    """One listed file: its sha256 (64 hex digits, no ``sha256:``) and size."""

    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class ModelRecord:
    """One model the bundle carries: its manifest file inside the bundle and that file's digest."""

    manifest: str
    digest: str | None = None
    name: str | None = None       # full name on the target
    size: int | None = None       # bytes of all its blobs

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"manifest": self.manifest}
        for key in ("digest", "name", "size"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, label: str, d: Any) -> ModelRecord:
        if not isinstance(d, dict) or not isinstance(d.get("manifest"), str):
            raise BundleError(f"bundle.json model {label!r} lacks 'manifest'")
        size = d.get("size")
        return cls(manifest=d["manifest"], digest=d.get("digest"), name=d.get("name"),
                   size=size if isinstance(size, int) else None)


#: optional top-level keys, in the order the dataclass lists them (JSON is written sorted)
_OPTIONAL = ("created", "created_iso", "tool", "arch", "platform", "glibc_min", "python", "pip",
             "llmcrate_wheel", "runtimes", "service")


@dataclass
class BundleMeta:
    """The parsed ``bundle.json``. Optional facts are None when a (hand-made, older) file lacks them."""

    name: str
    version: str
    files: dict[str, FileEntry]
    models: dict[str, ModelRecord]
    format: int = BUNDLE_FORMAT
    created: int | None = None
    created_iso: str | None = None
    tool: dict[str, Any] | None = None
    arch: str | None = None
    platform: str | None = None
    glibc_min: list[int] | None = None
    python: list[str] | None = None
    pip: dict[str, str] | None = None
    llmcrate_wheel: str | None = None
    runtimes: dict[str, dict[str, Any]] | None = None
    service: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def top(self) -> str:
        """The bundle's one top folder, ``<name>-<version>``."""
        return f"{self.name}-{self.version}"

    def to_json(self) -> dict[str, Any]:
        """The bundle.json object (keys left unset are left out)."""
        out: dict[str, Any] = dict(self.extra)
        out.update({"format": self.format, "name": self.name, "version": self.version,
                    "files": {rel: e.to_json() for rel, e in self.files.items()},
                    "models": {label: m.to_json() for label, m in self.models.items()}})
        for key in _OPTIONAL:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def dumps(self) -> bytes:
        """The bytes ``bundler.pack`` writes as the bundle's first member."""
        return json.dumps(self.to_json(), indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, meta: Any) -> BundleMeta:
        """Validate a parsed bundle.json; BundleError (UnsafeArchive for a path that leaves the
        bundle) unless it is one this tool understands."""
        if not isinstance(meta, dict):
            raise BundleError("bundle.json is not a JSON object")
        fmt = meta.get("format")
        if fmt != BUNDLE_FORMAT:
            raise BundleError(f"bundle.json format {fmt!r} is not supported (this tool reads {BUNDLE_FORMAT})")
        for key in ("name", "version", "files", "models"):
            if key not in meta:
                raise BundleError(f"bundle.json lacks {key!r}")
        raw_files = meta["files"]
        if not isinstance(raw_files, dict):
            raise BundleError("bundle.json 'files' is not an object")
        files: dict[str, FileEntry] = {}
        for rel, entry in raw_files.items():
            check_relpath(rel)
            if not (isinstance(entry, dict) and isinstance(entry.get("size"), int)
                    and _SHA256_HEX.fullmatch(str(entry.get("sha256", "")))):
                raise BundleError(f"bundle.json entry for {rel!r} lacks sha256/size")
            files[rel] = FileEntry(sha256=entry["sha256"], size=entry["size"])
        if not isinstance(meta["models"], dict):
            raise BundleError("bundle.json 'models' is not an object")
        models = {label: ModelRecord.from_json(label, m) for label, m in meta["models"].items()}
        known = {"format", "name", "version", "files", "models", *_OPTIONAL}
        return cls(name=str(meta["name"]), version=str(meta["version"]), files=files, models=models,
                   format=fmt, **{k: meta[k] for k in _OPTIONAL if k in meta},
                   extra={k: v for k, v in meta.items() if k not in known})

    @classmethod
    def loads(cls, raw: bytes | str) -> BundleMeta:
        """Parse and validate bundle.json bytes; ValueError when they are not JSON at all."""
        return cls.from_json(json.loads(raw))
