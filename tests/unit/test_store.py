"""The store on a folder laid out exactly like Ollama's ``~/.ollama/models``."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from runtime.errors import DigestMismatch, InsufficientSpace, ModelNotFound, StoreError
from runtime.models.store import (
    MEDIA_CONFIG,
    MEDIA_MODEL,
    MEDIA_TEMPLATE,
    Layer,
    Manifest,
    Store,
)


def _blob(root: Path, data: bytes, *, old_style: bool = False) -> str:
    hexd = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    sep = ":" if old_style else "-"
    (root / "blobs" / f"sha256{sep}{hexd}").write_bytes(data)
    return "sha256:" + hexd


def _ollama_model(root: Path, rel: str, weights: bytes, template: bytes = b"{{ .Prompt }}",
                  *, old_style: bool = False) -> bytes:
    """Write a model the way Ollama lays it out; return the manifest bytes."""
    w = _blob(root, weights, old_style=old_style)
    t = _blob(root, template, old_style=old_style)
    c = _blob(root, b'{"model_format":"gguf","model_family":"llama"}', old_style=old_style)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": MEDIA_CONFIG, "digest": c, "size": 46},
        "layers": [{"mediaType": MEDIA_MODEL, "digest": w, "size": len(weights)},
                   {"mediaType": MEDIA_TEMPLATE, "digest": t, "size": len(template)}],
    }
    raw = json.dumps(manifest).encode()
    p = root / "manifests" / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(raw)
    return raw


def test_reads_an_ollama_store_as_it_is(tmp_path: Path) -> None:
    raw = _ollama_model(tmp_path, "registry.ollama.ai/library/qwen2.5/0.5b", b"W" * 1000)
    _ollama_model(tmp_path, "registry.ollama.ai/someone/tool/latest", b"X" * 10)
    _ollama_model(tmp_path, "localhost:5000/ns/m/v1", b"Y" * 10)
    store = Store(tmp_path)
    names = sorted(e.name.display for e in store.list_models())
    assert names == ["localhost:5000/ns/m:v1", "qwen2.5:0.5b", "someone/tool:latest"]
    m = store.resolve("qwen2.5:0.5b")
    assert m.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert m.short_id == hashlib.sha256(raw).hexdigest()[:12]
    assert m.raw == raw
    entry = next(e for e in store.list_models() if e.name.display == "qwen2.5:0.5b")
    assert entry.size == 1000 + len(b"{{ .Prompt }}") + 46


def test_old_colon_blob_names_are_read(tmp_path: Path) -> None:
    _ollama_model(tmp_path, "registry.ollama.ai/library/old/latest", b"old weights", old_style=True)
    store = Store(tmp_path)
    m = store.resolve("old")
    path = store.blob_path(m.layers_of(MEDIA_MODEL)[0].digest)
    assert path.name.startswith("sha256:") and path.read_bytes() == b"old weights"


def test_names_compare_case_insensitively(tmp_path: Path) -> None:
    _ollama_model(tmp_path, "registry.ollama.ai/library/MyModel/Latest", b"w")
    assert Store(tmp_path).resolve("mymodel:latest").layers


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match='model "nope:latest" not found'):
        Store(tmp_path).resolve("nope")


def test_corrupt_manifest_is_a_clear_error_and_skipped_in_list(tmp_path: Path) -> None:
    _ollama_model(tmp_path, "registry.ollama.ai/library/good/latest", b"w")
    bad = tmp_path / "manifests/registry.ollama.ai/library/bad/latest"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"schemaVersion": 2, "layers": [')
    store = Store(tmp_path)
    with pytest.raises(StoreError, match="corrupt manifest of bad:latest"):
        store.resolve("bad")
    assert [e.name.display for e in store.list_models()] == ["good:latest"]


def test_write_manifest_refuses_missing_blobs(tmp_path: Path) -> None:
    store = Store(tmp_path)
    cfg = store.add_blob_bytes(b"{}")
    ghost = Layer(MEDIA_MODEL, "sha256:" + "0" * 64, 5)
    m = Manifest.build(config=Layer(MEDIA_CONFIG, cfg.digest, cfg.size), layers=[ghost])
    with pytest.raises(StoreError, match="missing blob"):
        store.write_manifest("x", m.raw)
    assert store.list_models() == []


def test_copy_delete_keep_shared_blobs(tmp_path: Path) -> None:
    _ollama_model(tmp_path, "registry.ollama.ai/library/a/latest", b"shared weights")
    store = Store(tmp_path)
    store.copy("a", "b:tag")
    assert store.resolve("b:tag").raw == store.resolve("a").raw
    weights = store.blob_path(store.resolve("a").layers_of(MEDIA_MODEL)[0].digest)
    store.delete("a")
    assert weights.exists(), "blob still used by b:tag must stay"
    assert not (tmp_path / "manifests/registry.ollama.ai/library/a").exists()
    store.delete("b:tag")
    assert not weights.exists()
    assert list((tmp_path / "blobs").iterdir()) == []
    with pytest.raises(ModelNotFound):
        store.delete("b:tag")


def test_gc_removes_unreferenced_and_stale_partials(tmp_path: Path) -> None:
    _ollama_model(tmp_path, "registry.ollama.ai/library/a/latest", b"kept")
    store = Store(tmp_path)
    orphan = store.blob_path(_blob(tmp_path, b"orphan"))
    stale = store.partial_path("sha256:" + "a" * 64)
    stale.write_bytes(b"half")
    old = time.time() - 3 * 86400
    os.utime(stale, (old, old))
    fresh = store.partial_path("sha256:" + "b" * 64)
    fresh.write_bytes(b"resumable")
    removed = store.gc()
    assert orphan in removed and stale in removed
    assert fresh.exists(), "a recent partial download is kept so a pull can resume"
    assert store.resolve("a").layers and all(
        store.blob_path(x.digest).exists() for x in store.resolve("a").all_blobs())


def test_add_blob_file_hashes_and_is_idempotent(tmp_path: Path) -> None:
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(3 << 20))
    store = Store(tmp_path / "models")
    a = store.add_blob_file(src)
    assert a.digest == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    assert store.blob_path(a.digest).read_bytes() == src.read_bytes()
    b = store.add_blob_file(src)
    assert b.digest == a.digest
    assert [p.name for p in store.blobs_dir.iterdir()] == [f"sha256-{a.digest[7:]}"]


def test_stream_digest_mismatch_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        store.add_blob_stream([b"abc", b"def"], expected="sha256:" + "1" * 64)
    assert list(store.blobs_dir.iterdir()) == []


def test_commit_blob_verifies(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.blobs_dir.mkdir(parents=True)
    tmp = store.blobs_dir / "x-partial"
    tmp.write_bytes(b"payload")
    with pytest.raises(DigestMismatch):
        store.commit_blob(tmp, "sha256:" + "2" * 64)
    assert not tmp.exists()
    tmp.write_bytes(b"payload")
    digest = "sha256:" + hashlib.sha256(b"payload").hexdigest()
    assert store.commit_blob(tmp, digest).read_bytes() == b"payload"


def test_not_enough_space(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(InsufficientSpace, match="not enough disk space"):
        store.check_space(1 << 62)


def test_invalid_digest(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="invalid digest"):
        Store(tmp_path).blob_path("sha256:../../etc/passwd")


@pytest.mark.parametrize("kernel_refuses", [False, True])
def test_add_blob_file_copies_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      kernel_refuses: bool) -> None:
    """The kernel copy trails the hash chunk by chunk; where copy_file_range is refused (other
    filesystems, old kernels) sendfile takes over. Either way the blob is byte-identical."""
    import errno as _errno

    import runtime.models.store as store_mod

    if kernel_refuses:
        def refuse(*a: object, **k: object) -> int:
            raise OSError(_errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(store_mod.os, "copy_file_range", refuse)
    src = tmp_path / "w.bin"
    data = os.urandom((store_mod.CHUNK * 3) + 12345)  # several chunks and a ragged tail
    src.write_bytes(data)
    seen: list[int] = []
    layer = Store(tmp_path / "m").add_blob_file(src, progress=seen.append)
    assert sum(seen) == len(data)
    blob = Store(tmp_path / "m").blob_path(layer.digest)
    assert blob.read_bytes() == data
    assert layer.digest == "sha256:" + hashlib.sha256(data).hexdigest()


def test_the_same_file_is_not_copied_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-creating from an unchanged GGUF (create re-run, every bundle build of a Modelfile
    model) reuses the stored blob; a changed file is copied and hashed again."""
    import runtime.models.store as store_mod

    copies: list[str] = []
    real = store_mod._pipelined_copy

    def counting(fin, out_fd, progress):  # a spy that still does the real work
        copies.append(fin.name)
        return real(fin, out_fd, progress)

    monkeypatch.setattr(store_mod, "_pipelined_copy", counting)
    src = tmp_path / "w.gguf"
    src.write_bytes(os.urandom(1 << 20))
    store = Store(tmp_path / "models")
    first = store.add_blob_file(src)
    second = store.add_blob_file(src)
    assert second.digest == first.digest and len(copies) == 1
    # the blob went away (deleted, gc): copy again
    store.blob_path(first.digest).unlink()
    assert store.add_blob_file(src).digest == first.digest and len(copies) == 2
    assert store.blob_path(first.digest).read_bytes() == src.read_bytes()
    # the file changed: copy again, new digest (mtime moved on explicitly: coarse clocks)
    before = src.stat().st_mtime_ns
    src.write_bytes(os.urandom(1 << 20))
    os.utime(src, ns=(before + 10**9, before + 10**9))
    third = store.add_blob_file(src)
    assert third.digest != first.digest and len(copies) == 3
    assert third.digest == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()


def test_blobs_and_manifests_are_readable_by_other_users(tmp_path: Path) -> None:
    """Written by root (an operator's `llmcrate pull`), read by the service's own user."""
    import stat

    old = os.umask(0o022)
    try:
        src = tmp_path / "w.bin"
        src.write_bytes(b"weights")
        store = Store(tmp_path / "models")
        cfg = store.add_blob_bytes(b"{}")
        w = store.add_blob_file(src)
        m = Manifest.build(config=Layer(MEDIA_CONFIG, cfg.digest, cfg.size),
                           layers=[Layer(MEDIA_MODEL, w.digest, w.size)])
        store.write_manifest("perm", m.raw)
        for p in (store.blob_path(cfg.digest), store.blob_path(w.digest), store.manifest_path("perm")):
            assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    finally:
        os.umask(old)


def _temp_of_a_killed_writer(blobs: Path) -> Path:
    """What a create or upload killed mid-copy leaves: its temp file, its PID gone."""
    code = ("import os, sys; from pathlib import Path; from runtime.models.store import new_temp_file\n"
            "fd, tmp = new_temp_file(Path(sys.argv[1])); os.write(fd, b'x' * 4096)\n"
            "print(tmp, flush=True); os._exit(9)\n")
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code, str(blobs)], capture_output=True, text=True)
    tmp = Path(r.stdout.strip())
    assert tmp.is_file() and tmp.name.startswith(".tmp-")
    return tmp


def test_temps_of_killed_writers_are_reclaimed_on_the_next_write(tmp_path: Path) -> None:
    from runtime.models.store import new_temp_file

    store = Store(tmp_path / "models")
    store.blobs_dir.mkdir(parents=True)
    dead = _temp_of_a_killed_writer(store.blobs_dir)
    fd, live = new_temp_file(store.blobs_dir)             # a write in progress, in this process
    legacy = store.blobs_dir / ".tmp-abc123"              # an older version's, just written
    legacy.write_bytes(b"y")
    try:
        store.add_blob_bytes(b"some blob")
        assert not dead.exists()
        assert live.exists() and legacy.exists()
    finally:
        os.close(fd)
        live.unlink()


def test_server_start_reclaims_temps_of_killed_writers(tmp_path: Path) -> None:
    from runtime.api.server_main import prepare_store
    from runtime.config import load_settings

    store = Store(tmp_path / "models")
    store.blobs_dir.mkdir(parents=True)
    dead = _temp_of_a_killed_writer(store.blobs_dir)
    old_legacy = store.blobs_dir / ".tmp-old"
    old_legacy.write_bytes(b"y")
    os.utime(old_legacy, (time.time() - 2 * 86400,) * 2)
    prepare_store(load_settings(models_dir=store.root))
    assert not dead.exists() and not old_legacy.exists()
