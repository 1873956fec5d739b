"""Build llama.cpp's own ``llama-server`` from the very llama.cpp that llama-cpp-python vendors.

    .venv/bin/python bench/llama_server.py        # prints the binary's path (builds once)

The pinned sdist (the version installed in this venv) is fetched with pip from the package
index, its ``vendor/llama.cpp`` is built with CMake (the ``llama-server`` target only, CPU,
``GGML_NATIVE`` as llama-cpp-python builds it by default) into ``~/.cache/llmcrate-bench``.
Nothing of llama.cpp is committed: the benchmarks build it where they run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

CACHE = Path(os.environ.get("LLMCRATE_BENCH_CACHE", Path.home() / ".cache" / "llmcrate-bench"))


def llama_server() -> Path:
    ver = version("llama_cpp_python")
    out = CACHE / f"llama-server-{ver}"
    binary = out / "bin" / "llama-server"
    if binary.is_file():
        return binary
    src = CACHE / f"llama-cpp-python-{ver}"
    if not (src / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                            ":all:", "-d", tmp, f"llama-cpp-python=={ver}"], check=True)
            [sdist] = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
            with tarfile.open(sdist) as tf:
                tf.extractall(tmp)
            [top] = [p for p in Path(tmp).iterdir() if p.is_dir()]
            if src.exists():
                shutil.rmtree(src)
            shutil.move(str(top), src)
    build = out / "build"
    jobs = str(os.cpu_count() or 2)
    subprocess.run(["cmake", "-S", str(src / "vendor" / "llama.cpp"), "-B", str(build),
                    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON",
                    "-DBUILD_SHARED_LIBS=OFF"], check=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs],
                   check=True)
    built = next(build.rglob("llama-server"))
    binary.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(built, binary)
    return binary


if __name__ == "__main__":
    print(llama_server())
