"""Bundle fixtures: a real demo bundle built once per session, and small hand-made bundles."""
from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bundler.pack import TarStreamer, _bytes_entry, _Sink, build_bundle
from bundler.spec import load_spec
from runtime.bundle.format import BUNDLE_FORMAT, BundleMeta
from runtime.models.store import Store
from tests.fakes import FakeRegistry

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
BOT_SYSTEM = "You are a terse test bot."


@dataclass
class Built:
    tar: Path
    bundle: BundleMeta
    spec: Path
    store: Store
    registry_name: str


@pytest.fixture(scope="session")
def fake_registry(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[FakeRegistry]:
    with FakeRegistry(tmp_path_factory.mktemp("registry")) as reg:
        reg.add_model("library/tiny:latest", tiny_gguf, params={"stop": ["<|im_end|>"], "temperature": 0},
                      license="Tiny test license")
        yield reg


def write_demo_spec(folder: Path, registry_host: str) -> Path:
    """The round-trip spec: a model from the (fake) registry, and a Modelfile model built FROM it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Modelfile").write_text(f'FROM tiny:latest\nSYSTEM """{BOT_SYSTEM}"""\nPARAMETER num_ctx 256\n')
    spec = {
        "name": "demo", "version": "1.0",
        "models": [
            {"name": f"{registry_host}/library/tiny:latest", "insecure": True, "as": "tiny:latest"},
            {"modelfile": "./Modelfile", "as": "tinybot:latest"},
        ],
        "runtimes": {"cpu": {"installed": True}},
        "python": [PY],
        "wheels": {"source": "installed"},
        "service": {"host": "127.0.0.1:11434", "keep_alive": "5m", "max_loaded_models": 2},
    }
    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, fake_registry: FakeRegistry) -> Built:
    """The demo bundle, built once: registry model pulled over loopback + a Modelfile model."""
    root = tmp_path_factory.mktemp("built")
    spec_path = write_demo_spec(root / "spec", fake_registry.host)
    store = Store(root / "store")
    with pytest.MonkeyPatch.context() as mp:  # session scope: the per-test HOME is not set up yet
        mp.setenv("LLMCRATE_CACHE", str(root / "cache"))
        result = build_bundle(load_spec(spec_path, env={}), store=store, out=root / "out.tar")
    return Built(tar=result.paths[0], bundle=result.bundle, spec=spec_path, store=store,
                 registry_name=f"{fake_registry.host}/library/tiny:latest")


def make_bundle(path: Path, files: dict[str, bytes], *, name: str = "mini", version: str = "1",
                models: dict[str, Any] | None = None, meta_extra: dict[str, Any] | None = None,
                listed: dict[str, bytes] | None = None) -> dict[str, Any]:
    """Write a small bundle tar with the production tar writer; ``listed`` overrides what bundle.json claims."""
    claims = listed if listed is not None else files
    meta = {"format": BUNDLE_FORMAT, "name": name, "version": version, "arch": "x86_64",
            "python": ["3.11"], "models": models or {}, "runtimes": {"cpu": {}},
            "files": {rel: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for rel, d in claims.items()},
            **(meta_extra or {})}
    sink = _Sink(path, "none", None)
    tw = TarStreamer(sink, top=f"{name}-{version}", mtime=0)
    tw.add(_bytes_entry("bundle.json", json.dumps(meta).encode()))
    for rel, data in files.items():
        tw.add(_bytes_entry(rel, data))
    tw.close()
    sink.finish()
    return meta


def tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    """A raw tar with arbitrary (possibly hostile) members."""
    import io
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
