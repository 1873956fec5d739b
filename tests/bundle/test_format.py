"""runtime.bundle.format: bundle.json as one dataclass, byte-compatible with what pack wrote before."""
from __future__ import annotations

import json

import pytest

from runtime.bundle.format import BUNDLE_FORMAT, BundleMeta, FileEntry, ModelRecord
from runtime.errors import BundleError, UnsafeArchive
from tests.bundle.conftest import Built

HEX = "ab" * 32


def _full() -> BundleMeta:
    return BundleMeta(
        name="demo", version="1.0", created=1700000000, created_iso="2023-11-14T22:13:20Z",
        tool={"name": "llmcrate", "version": "0.1.0"}, arch="x86_64", platform="manylinux_2_28_x86_64",
        glibc_min=[2, 28], python=["3.11"], pip={"3.11": "pip-24.0-py3-none-any.whl"},
        llmcrate_wheel="llmcrate-0.1.0-py3-none-any.whl",
        models={"tiny:latest": ModelRecord(manifest="models/manifests/x/library/tiny/latest",
                                           digest="sha256:" + HEX, name="tiny:latest", size=5)},
        runtimes={"cpu": {"source": "wheel", "portable": None}}, service={"host": "127.0.0.1:11434"},
        files={"install.sh": FileEntry(HEX, 10), "models/blobs/sha256-" + HEX: FileEntry(HEX, 5)})


def test_written_bundle_json_parses_back_equal() -> None:
    meta = _full()
    raw = meta.dumps()
    assert BundleMeta.loads(raw) == meta
    assert BundleMeta.loads(raw).dumps() == raw


def test_dumps_is_what_pack_wrote_as_a_dict() -> None:
    """The bytes are those of the dict bundler/pack.py built before the dataclass (issue 14)."""
    meta = _full()
    as_dict = {
        "format": BUNDLE_FORMAT, "name": "demo", "version": "1.0", "created": 1700000000,
        "created_iso": "2023-11-14T22:13:20Z", "tool": {"name": "llmcrate", "version": "0.1.0"},
        "arch": "x86_64", "platform": "manylinux_2_28_x86_64", "glibc_min": [2, 28], "python": ["3.11"],
        "pip": {"3.11": "pip-24.0-py3-none-any.whl"}, "llmcrate_wheel": "llmcrate-0.1.0-py3-none-any.whl",
        "models": {"tiny:latest": {"name": "tiny:latest", "manifest": "models/manifests/x/library/tiny/latest",
                                   "digest": "sha256:" + HEX, "size": 5}},
        "runtimes": {"cpu": {"source": "wheel", "portable": None}}, "service": {"host": "127.0.0.1:11434"},
        "files": {"install.sh": {"sha256": HEX, "size": 10}, "models/blobs/sha256-" + HEX: {"sha256": HEX, "size": 5}},
    }
    assert meta.dumps() == json.dumps(as_dict, indent=1, sort_keys=True).encode() + b"\n"


def test_built_bundle_json_round_trips_byte_for_byte(built: Built) -> None:
    import tarfile

    with tarfile.open(built.tar) as tf:
        raw = tf.extractfile("demo-1.0/bundle.json").read()  # type: ignore[union-attr]
    assert BundleMeta.loads(raw) == built.bundle
    assert built.bundle.dumps() == raw


def test_old_minimal_bundle_json_still_loads_and_keeps_unknown_keys() -> None:
    """The hand-made form the tests' make_bundle writes (no tool, created, pip ...), plus a key
    from some newer version: it loads, and writes back the same object."""
    old = {"format": 1, "name": "mini", "version": "1", "arch": "x86_64", "python": ["3.11"],
           "models": {}, "runtimes": {"cpu": {}}, "files": {"a.whl": {"sha256": HEX, "size": 3}},
           "future_key": {"x": 1}}
    meta = BundleMeta.from_json(old)
    assert (meta.top, meta.tool, meta.extra) == ("mini-1", None, {"future_key": {"x": 1}})
    assert meta.to_json() == old


@pytest.mark.parametrize(("doc", "error", "message"), [
    ([], BundleError, "bundle.json is not a JSON object"),
    ({"format": 2}, BundleError, "bundle.json format 2 is not supported (this tool reads 1)"),
    ({"format": 1, "name": "x", "version": "1", "files": {}}, BundleError, "bundle.json lacks 'models'"),
    ({"format": 1, "name": "x", "version": "1", "files": [], "models": {}}, BundleError,
     "bundle.json 'files' is not an object"),
    ({"format": 1, "name": "x", "version": "1", "models": {}, "files": {"a": {"size": 1}}}, BundleError,
     "bundle.json entry for 'a' lacks sha256/size"),
    ({"format": 1, "name": "x", "version": "1", "models": {}, "files": {"../a": {"sha256": HEX, "size": 1}}},
     UnsafeArchive, "path leaves the bundle"),
    ({"format": 1, "name": "x", "version": "1", "files": {}, "models": {"m": {"digest": "sha256:x"}}},
     BundleError, "bundle.json model 'm' lacks 'manifest'"),
])
def test_from_json_refuses_with_the_same_messages(doc: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as e:
        BundleMeta.from_json(doc)
    assert message in str(e.value)
