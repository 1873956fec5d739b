"""Every runtime source a spec accepts, built end to end into a bundle (issue 10): ``wheel``,
``index`` (a PEP 503 index served on loopback holding a llama-cpp-python wheel and stand-ins of
NVIDIA's CUDA library wheels), ``build`` (a source build, here of a small stand-in sdist) and
``installed`` (the demo bundle of tests/bundle/conftest.py). The wheels are small fakes: what is
under test is the bundler's handling of each source, not llama.cpp."""
from __future__ import annotations

import functools
import hashlib
import os
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from bundler.pack import build_bundle
from bundler.spec import DEFAULT_LLAMA_CPP_VERSION, load_spec
from runtime.models.store import Store
from tests.bundle.conftest import PY
from tests.fakes import FakeRegistry

V = DEFAULT_LLAMA_CPP_VERSION
CP = "cp" + PY.replace(".", "")


def fake_wheel(folder: Path, dist: str, version: str, tag: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel holding ``files``."""
    folder.mkdir(parents=True, exist_ok=True)
    norm = dist.replace("-", "_")
    path = folder / f"{norm}-{version}-{tag}.whl"
    info = f"{norm}-{version}.dist-info"
    meta = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
            f"{info}/WHEEL": (f"Wheel-Version: 1.0\nGenerator: llmcrate-tests\nRoot-Is-Purelib: false\n"
                              f"Tag: {tag}\n").encode()}
    with zipfile.ZipFile(path, "w") as zf:
        record = []
        for name, data in {**files, **meta}.items():
            zf.writestr(name, data)
            record.append(f"{name},,")
        zf.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return path


def llama_wheel(folder: Path, marker: bytes, tag: str = f"{CP}-{CP}-linux_x86_64") -> Path:
    return fake_wheel(folder, "llama-cpp-python", V, tag, {
        "llama_cpp/__init__.py": b"",
        "llama_cpp/lib/libllama.so": b"\x7fELF libllama " + marker,
        "llama_cpp/lib/libggml.so": b"\x7fELF libggml " + marker})


@pytest.fixture
def pep503_index(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A PEP 503 "simple" index on 127.0.0.1: ``root/simple/<project>/<files>`` served with
    directory listings (the links pip reads)."""
    root = tmp_path / "index"
    (root / "simple").mkdir(parents=True)
    handler = functools.partial(_QuietHandler, directory=str(root))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/simple", root / "simple"
    finally:
        srv.shutdown()
        srv.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def offline_pip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pep503_index) -> str:
    """pip's default index is the loopback one (nothing reaches PyPI); a fresh llmcrate cache."""
    url, _ = pep503_index
    monkeypatch.setenv("PIP_INDEX_URL", url)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("LLMCRATE_CACHE", str(tmp_path / "cache"))
    return url


def _spec(folder: Path, registry: FakeRegistry, runtimes: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": "rt", "version": "1",
            "models": [{"name": f"{registry.host}/library/tiny:latest", "insecure": True,
                        "as": "tiny:latest"}],
            "runtimes": runtimes, "python": [PY], "wheels": {"source": "installed"},
            "llama_cpp_python": V}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _members(tar: Path) -> dict[str, bytes]:
    with tarfile.open(tar) as tf:
        return {m.name.split("/", 1)[1]: tf.extractfile(m).read()  # type: ignore[union-attr]
                for m in tf.getmembers() if m.isfile() and "/runtimes/" in "/" + m.name}


def test_wheel_and_index_runtimes(fake_registry: FakeRegistry, tmp_path: Path, pep503_index,
                                  offline_pip: str) -> None:
    url, simple = pep503_index
    cpu = llama_wheel(tmp_path / "local", b"cpu-from-a-wheel-file")
    llama_wheel(simple / "llama-cpp-python", b"cuda-from-the-index")
    for dist, lib in (("nvidia-cuda-runtime-cu12", "cuda_runtime/lib/libcudart.so.12"),
                      ("nvidia-cublas-cu12", "cublas/lib/libcublas.so.12")):
        fake_wheel(simple / dist, dist, "12.4.127", "py3-none-manylinux2014_x86_64",
                   {f"nvidia/{lib}": b"\x7fELF " + dist.encode(), "nvidia/__init__.py": b""})
    spec = _spec(tmp_path / "spec", fake_registry,
                 {"cpu": {"wheel": str(cpu)}, "cuda12": {"index": url, "cuda": "12.4"}})
    result = build_bundle(load_spec(spec, env={}), store=Store(tmp_path / "store"),
                          out=tmp_path / "out.tar")
    runtimes = result.bundle.runtimes
    assert runtimes["cpu"]["source"] == "wheel"
    assert runtimes["cuda12"]["source"] == "wheel index" and runtimes["cuda12"]["cuda"] == "12.4"
    files = _members(result.paths[0])
    assert files["runtimes/cpu/libllama.so"].endswith(b"cpu-from-a-wheel-file")
    assert files["runtimes/cuda12/libllama.so"].endswith(b"cuda-from-the-index")
    assert files["runtimes/cuda12/libcudart.so.12"] == b"\x7fELF nvidia-cuda-runtime-cu12"
    assert files["runtimes/cuda12/libcublas.so.12"] == b"\x7fELF nvidia-cublas-cu12"
    assert "runtimes/cpu/libcudart.so.12" not in files


#: the stand-in sdist's in-tree PEP 517 backend (no build requirements: nothing to fetch offline);
#: its "compiled" library records the CMAKE_ARGS the bundler passed
BACKEND_PY = '''
import os, sys, zipfile

VERSION = "{version}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    cp = "cp%d%d" % sys.version_info[:2]
    name = "llama_cpp_python-%s-%s-%s-linux_x86_64.whl" % (VERSION, cp, cp)
    info = "llama_cpp_python-%s.dist-info" % VERSION
    lib = b"\\x7fELF built with " + os.environ.get("CMAKE_ARGS", "").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        zf.writestr("llama_cpp/__init__.py", "")
        zf.writestr("llama_cpp/lib/libllama.so", lib)
        zf.writestr(info + "/METADATA", "Metadata-Version: 2.1\\nName: llama-cpp-python\\n"
                    "Version: %s\\n" % VERSION)
        zf.writestr(info + "/WHEEL", "Wheel-Version: 1.0\\nGenerator: stand-in\\n"
                    "Root-Is-Purelib: false\\nTag: %s-%s-linux_x86_64\\n" % (cp, cp))
        zf.writestr(info + "/RECORD", "")
    return name
'''
PYPROJECT = """[build-system]
requires = []
build-backend = "standin_backend"
backend-path = ["."]
"""


def test_build_runtime_compiles_the_sdist_with_its_cmake_args(fake_registry: FakeRegistry,
                                                              tmp_path: Path, pep503_index,
                                                              offline_pip: str,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    _, simple = pep503_index
    src = tmp_path / "sdist" / f"llama_cpp_python-{V}"
    (src / "llama_cpp").mkdir(parents=True)
    (src / "llama_cpp" / "__init__.py").write_text("")
    (src / "standin_backend.py").write_text(BACKEND_PY.format(version=V))
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: {V}\n")
    (simple / "llama-cpp-python").mkdir(parents=True)
    with tarfile.open(simple / "llama-cpp-python" / f"llama_cpp_python-{V}.tar.gz", "w:gz") as tf:
        tf.add(src, arcname=src.name)
    spec = _spec(tmp_path / "spec", fake_registry,
                 {"cpu": {"build": {"cmake_args": "-DGGML_NATIVE=OFF -DLLMCRATE_TEST=1"}}})
    result = build_bundle(load_spec(spec, env={}), store=Store(tmp_path / "store"),
                          out=tmp_path / "out.tar")
    assert result.bundle.runtimes["cpu"]["source"] == "source build"
    assert result.bundle.runtimes["cpu"]["portable"] is True
    lib = _members(result.paths[0])["runtimes/cpu/libllama.so"]
    assert lib == b"\x7fELF built with -DGGML_NATIVE=OFF -DLLMCRATE_TEST=1"
    digest = hashlib.sha256(lib).hexdigest()
    assert result.bundle.files["runtimes/cpu/libllama.so"].sha256 == digest
    assert os.environ["PIP_INDEX_URL"].startswith("http://127.0.0.1:")
