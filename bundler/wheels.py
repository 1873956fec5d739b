"""Wheelhouse and llama.cpp runtimes for a bundle.

* the llmcrate wheel itself, built from the repository (pure Python, reproducible bytes);
* every dependency for each target Python: ``pip download --only-binary=:all:`` per Python
  (``wheels.source: download``), or repacked from this interpreter's installed distributions
  (``wheels.source: installed``: offline, one Python);
* pip's own wheel, so the target runs ``python3 wheels/pip-*.whl/pip install --no-index``;
* ``runtimes/<name>/``: llama.cpp shared libraries out of a llama-cpp-python wheel (local file,
  wheel index, or a source build with CMake flags), plus the CUDA libraries a cuda runtime needs.

Source builds go to their own cache keyed by version + CMake flags, built with ``--no-cache-dir``:
pip's wheel cache ignores ``CMAKE_ARGS`` and would hand back a build with other flags.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable

from bundler.spec import BundleSpec, RuntimeSpec
from runtime.errors import BundleError

try:  # packaging ships with pip; the online host always has pip
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pragma: no cover
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[assignment]

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
#: libraries a cuda runtime needs beside llama.cpp's own (pip wheels of NVIDIA's redistributables)
CUDA_LIB_WHEELS = {"12": ["nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12"],
                   "13": ["nvidia-cuda-runtime", "nvidia-cublas"]}
_LIB = re.compile(r"\.so(\.\d+)*$")
#: wheel members that make a runtime: llama_cpp's own libraries and ggml's loadable backends
_RUNTIME_MEMBERS = re.compile(r"^(llama_cpp/lib/|bin/libggml-[^/]+\.so$)")
_LICENSE = re.compile(r"(^|/)(LICEN[CS]E|COPYING|NOTICE|AUTHORS)[^/]*$", re.I)


def cache_dir() -> Path:
    """llmcrate's own cache for wheelhouses and runtime builds."""
    base = os.environ.get("LLMCRATE_CACHE") or os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / ("" if os.environ.get("LLMCRATE_CACHE") else "llmcrate")


# ---------------------------------------------------------------------------------------------
# deterministic wheel writing
def _zip_date(epoch: int) -> tuple[int, int, int, int, int, int]:
    import time
    t = time.gmtime(max(epoch, 315532800))  # zip cannot store dates before 1980
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec - t.tm_sec % 2)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(path: Path, files: Iterable[tuple[str, bytes, int]], *, dist_info: str, epoch: int) -> Path:
    """Write a wheel from (arcname, data, mode) with sorted members, a fixed date and a fresh RECORD."""
    date = _zip_date(epoch)
    record = io.StringIO()
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        items = sorted(files, key=lambda f: (f[0].startswith(dist_info + "/"), f[0]))
        for arcname, data, mode in items:
            info = zipfile.ZipInfo(arcname, date_time=date)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=6)
            record.write(f"{arcname},{_record_hash(data)},{len(data)}\n")
        rec = f"{dist_info}/RECORD"
        record.write(f"{rec},,\n")
        info = zipfile.ZipInfo(rec, date_time=date)
        info.external_attr = 0o100644 << 16
        zf.writestr(info, record.getvalue().encode(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    os.replace(tmp, path)
    return path


def _load_toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        from pip._vendor import tomli as tomllib
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def build_llmcrate_wheel(out_dir: Path, *, epoch: int, repo: Path = REPO) -> Path:
    """Build llmcrate's own wheel from the source tree (``runtime``, ``bundler``, the templates).

    Same layout as setuptools produces with the package-data in pyproject.toml (templates go in as
    ``bundler/templates``); written here so the build needs no network and gives the same bytes.
    """
    pyproject = repo / "pyproject.toml"
    if not pyproject.is_file():
        return repack_installed("llmcrate", out_dir, epoch=epoch)
    project = _load_toml(pyproject)["project"]
    name, version = project["name"], project["version"]
    dist_info = f"{name}-{version}.dist-info"
    files: list[tuple[str, bytes, int]] = []
    for pkg in ("runtime", "bundler"):
        for p in sorted((repo / pkg).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"):
                files.append((p.relative_to(repo).as_posix(), p.read_bytes(), 0o644))
    templates = repo / "templates"
    if templates.is_dir() and not (repo / "bundler" / "templates").exists():
        for p in sorted(templates.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                files.append(("bundler/templates/" + p.relative_to(templates).as_posix(), p.read_bytes(), 0o644))
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if project.get("description"):
        meta.append(f"Summary: {project['description']}")
    if project.get("requires-python"):
        meta.append(f"Requires-Python: {project['requires-python']}")
    lic = project.get("license")
    if isinstance(lic, dict) and lic.get("text"):
        meta.append(f"License: {lic['text']}")
    for dep in project.get("dependencies", []):
        meta.append(f"Requires-Dist: {dep}")
    for extra, deps in sorted(project.get("optional-dependencies", {}).items()):
        meta.append(f"Provides-Extra: {extra}")
        for dep in deps:
            r = Requirement(dep)
            marker = f"({r.marker}) and " if r.marker else ""
            r.marker = None
            meta.append(f'Requires-Dist: {r}; {marker}extra == "{extra}"')
    readme = repo / str(project.get("readme", "README.md"))
    body = readme.read_text() if readme.is_file() else ""
    if body:
        meta.append("Description-Content-Type: text/markdown")
    files.append((f"{dist_info}/METADATA", ("\n".join(meta) + "\n\n" + body).encode(), 0o644))
    files.append((f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: llmcrate-bundler\n"
                  b"Root-Is-Purelib: true\nTag: py3-none-any\n", 0o644))
    groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
    eps = "\n".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(entries.items()))
                    for group, entries in sorted(groups.items()) if entries)
    if eps:
        files.append((f"{dist_info}/entry_points.txt", eps.encode(), 0o644))
    for lf in ("LICENSE", "LICENSE.txt", "NOTICE"):
        if (repo / lf).is_file():
            files.append((f"{dist_info}/licenses/{lf}", (repo / lf).read_bytes(), 0o644))
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_wheel(out_dir / f"{name}-{version}-py3-none-any.whl", files, dist_info=dist_info, epoch=epoch)


def repack_installed(dist_name: str, out_dir: Path, *, epoch: int) -> Path:
    """Turn an installed distribution of this interpreter back into a wheel (offline wheelhouse)."""
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        raise BundleError(f"{dist_name} is not installed in {sys.executable}") from None
    wheel_meta = dist.read_text("WHEEL")
    if not wheel_meta or dist.files is None:
        raise BundleError(f"{dist_name} was not installed from a wheel; cannot repack it")
    tags = [ln.split(":", 1)[1].strip() for ln in wheel_meta.splitlines() if ln.startswith("Tag:")]
    if any((f.parent.name.endswith(".dist-info") and f.name == "direct_url.json") for f in dist.files):
        raw = dist.read_text("direct_url.json") or ""
        if '"editable": true' in raw.replace(" ", "").replace('"editable":true', '"editable": true'):
            raise BundleError(f"{dist_name} is installed in editable mode; cannot repack it")
    name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    version = dist.version
    info_dir = next(str(f.parent) for f in dist.files if f.name == "METADATA" and f.parent.name.endswith(".dist-info"))
    filename = f"{name}-{version}-{_compress_tags(tags)}.whl"
    # Deflating a large package takes seconds: keep repacked wheels, keyed by what was installed.
    key = hashlib.sha256("\0".join([filename, str(epoch), dist.read_text("RECORD") or "", wheel_meta,
                                     str(Path(str(dist.locate_file(""))).resolve())]).encode()).hexdigest()[:20]
    cached = cache_dir() / "repacked" / key / filename
    if cached.is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, out_dir / filename)
        return out_dir / filename
    files: list[tuple[str, bytes, int]] = []
    for f in dist.files:
        rel = PurePosixPath(str(f).replace(os.sep, "/"))
        if ".." in rel.parts or "__pycache__" in rel.parts or rel.suffix == ".pyc":
            continue  # console scripts outside site-packages: pip writes them again from entry_points
        if str(rel.parent) == info_dir and rel.name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
            continue
        path = Path(f.locate())
        if not path.is_file():
            continue
        mode = 0o755 if os.access(path, os.X_OK) and _LIB.search(rel.name) is None and rel.suffix == "" else 0o644
        files.append((str(rel), path.read_bytes(), mode))
    out_dir.mkdir(parents=True, exist_ok=True)
    built = write_wheel(out_dir / filename, files, dist_info=info_dir, epoch=epoch)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{filename}.{os.getpid()}.tmp")
        shutil.copyfile(built, tmp)
        os.replace(tmp, cached)
    except OSError as e:  # a read-only cache only costs time
        logger.info("cannot cache %s: %s", filename, e)
    return built


def _compress_tags(tags: list[str]) -> str:
    parts = [t.split("-") for t in tags]
    return "-".join(".".join(sorted({p[i] for p in parts}, key=[q[i] for q in parts].index))
                    for i in range(3))


def requires_of_wheel(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    return [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Requires-Dist:")]


def installed_closure(requirements: Iterable[str], *, exclude: Iterable[str] = ()) -> list[str]:
    """Distribution names this interpreter has installed for ``requirements`` and their dependencies."""
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    todo = [Requirement(r) for r in requirements]
    skip = {canonicalize_name(x) for x in exclude}
    seen: dict[str, None] = {}
    while todo:
        req = todo.pop(0)
        if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in ("", *req.extras)):
            continue
        key = canonicalize_name(req.name)
        if key in seen or key in skip:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            raise BundleError(f"{req.name} (needed by the bundle) is not installed in {sys.executable}") from None
        seen[key] = None
        for sub in dist.requires or []:
            r = Requirement(sub)
            if r.marker is None or r.marker.evaluate({**env, "extra": ""}) or any(
                    r.marker.evaluate({**env, "extra": e}) for e in req.extras):
                r.marker = None
                todo.append(r)
    return sorted(seen)


# ---------------------------------------------------------------------------------------------
# pip download
def _pip(args: list[str], *, env: dict[str, str] | None = None) -> str:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    logger.info("running %s", " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-6:])
        raise BundleError(f"pip {args[0]} failed:\n{tail}")
    return r.stdout


_LEGACY = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}


def platform_tags(platform_tag: str) -> list[str]:
    """Every platform tag a target of ``platform_tag`` accepts, newest glibc first.

    pip takes ``--platform`` literally (``manylinux_2_28_x86_64`` would skip a wheel tagged only
    ``manylinux_2_17``), so the older glibc levels and their legacy aliases are spelled out.
    """
    arch = "aarch64" if platform_tag.endswith("aarch64") else "x86_64"
    m = re.match(r"manylinux_(\d+)_(\d+)_", platform_tag)
    glibc = (int(m.group(1)), int(m.group(2))) if m else _LEGACY.get(platform_tag.split("_")[0], (2, 17))
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc[1], 4, -1)]
    tags += [f"{name}_{arch}" for name, level in _LEGACY.items() if level <= glibc]
    return tags


def _platform_args(platform_tag: str) -> list[str]:
    arch = "aarch64" if platform_tag.endswith("aarch64") else "x86_64"
    args: list[str] = []
    for tag in [*platform_tags(platform_tag), f"linux_{arch}"]:
        args += ["--platform", tag]
    return args


def download_wheels(requirements: list[str], *, python: str, platform_tag: str, dest: Path,
                    index_url: str | None = None, find_links: Iterable[Path] = (),
                    offline: bool = False) -> list[Path]:
    """``pip download`` binary wheels for one target Python into ``dest`` (a persistent cache)."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    abi = "cp" + python.replace(".", "")
    args = ["download", "--only-binary=:all:", "--dest", str(dest), "--python-version", python,
            "--implementation", "cp", "--abi", abi, *_platform_args(platform_tag),
            "--find-links", str(dest)]
    if offline:
        args.append("--no-index")
    elif index_url:
        args += ["--index-url", index_url]
    for fl in find_links:
        args += ["--find-links", str(fl)]
    # pip download names every file it picked: "Saved <path>" / "File was already downloaded <path>"
    out = _pip([*args, *requirements])
    picked = []
    for line in out.splitlines():
        m = re.match(r"\s*(?:Saved|File was already downloaded)\s+(.+\.whl)\s*$", line)
        if m:
            p = Path(m.group(1))
            picked.append(p if p.is_absolute() else (dest / p.name))
    missing = [p for p in picked if not p.is_file()]
    if missing or not picked:
        raise BundleError(f"pip download for Python {python} gave no usable wheels "
                          f"({', '.join(str(p) for p in missing) or 'nothing saved'})")
    logger.info("python %s: %d wheels (%d new)", python, len(picked), len(set(dest.glob("*.whl")) - before))
    return sorted(set(picked))


# ---------------------------------------------------------------------------------------------
# llama.cpp runtimes
def _source_build(rt: RuntimeSpec, version: str) -> Path:
    key = hashlib.sha256(f"{version}\0{rt.cmake_args}".encode()).hexdigest()[:16]
    out = cache_dir() / "runtimes" / f"{rt.name}-{version}-{key}"
    found = sorted(out.glob("llama_cpp_python-*.whl"))
    if found:
        return found[0]
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CMAKE_ARGS=rt.cmake_args, FORCE_CMAKE="1")
    logger.warning("building llama-cpp-python %s for %s (CMAKE_ARGS=%s); this takes a while",
                   version, rt.name, rt.cmake_args)
    # --no-cache-dir: pip's wheel cache is keyed without CMAKE_ARGS and would return another build
    _pip(["wheel", "--no-deps", "--no-binary", "llama-cpp-python", "--no-cache-dir", "-w", str(out),
          f"llama-cpp-python=={version}"], env=env)
    found = sorted(out.glob("llama_cpp_python-*.whl"))
    if not found:
        raise BundleError(f"runtimes.{rt.name}: the source build produced no wheel")
    return found[0]


def runtime_wheel(rt: RuntimeSpec, *, version: str, python: str, platform_tag: str) -> Path | None:
    """The llama-cpp-python wheel a runtime comes from (None: the installed package's libraries)."""
    if rt.kind == "wheel":
        assert rt.wheel is not None
        return rt.wheel
    if rt.kind == "installed":
        return None
    if rt.kind == "index":
        key = hashlib.sha256((rt.index or "").encode()).hexdigest()[:12]
        dest = cache_dir() / "runtimes" / f"{rt.name}-index-{key}"
        dest.mkdir(parents=True, exist_ok=True)
        abi = "cp" + python.replace(".", "")
        _pip(["download", "--no-deps", "--only-binary=:all:", "--dest", str(dest), "--python-version", python,
              "--implementation", "cp", "--abi", abi, *_platform_args(platform_tag),
              "--extra-index-url", str(rt.index), f"llama-cpp-python=={version}"])
        found = sorted(dest.glob(f"llama_cpp_python-{version}-*.whl"))
        if not found:
            raise BundleError(f"runtimes.{rt.name}: no llama-cpp-python {version} wheel at {rt.index}")
        return found[-1]
    return _source_build(rt, version)


@dataclass(frozen=True)
class LibFile:
    """One file of a runtime, readable without copying it out first."""

    name: str
    size: int
    open: Callable[[], IO[bytes]]


def _zip_libs(wheel: Path, prefix_re: re.Pattern[str]) -> list[LibFile]:
    out = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if prefix_re.match(info.filename) and _LIB.search(info.filename) and not info.is_dir():
                def opener(w: Path = wheel, n: str = info.filename) -> IO[bytes]:
                    zfo = zipfile.ZipFile(w)
                    return zfo.open(n)
                out.append(LibFile(PurePosixPath(info.filename).name, info.file_size, opener))
    return out


def _file_opener(path: Path) -> Callable[[], IO[bytes]]:
    """Opens ``path`` when the bundle writer reads it (the writer closes it)."""
    return lambda: open(path, "rb")


def runtime_libs(rt: RuntimeSpec, wheel: Path | None) -> list[LibFile]:
    """The llama.cpp shared libraries of one runtime (``libllama.so``, ``libggml*.so``, ``libmtmd.so``)."""
    if wheel is not None:
        # a GGML_BACKEND_DL build (the portable cpu runtime, GPU builds with it) installs each
        # backend as bin/libggml-<name>.so beside the package: start.sh loads them from the
        # runtime folder (runtime.serve.hardware.load_ggml_backends), so they travel with it
        libs = _zip_libs(wheel, _RUNTIME_MEMBERS)
    else:
        try:
            import llama_cpp
        except ImportError as e:
            raise BundleError(f"runtimes.{rt.name}: 'installed: true' needs llama-cpp-python in "
                              f"{sys.executable}") from e
        pkg = Path(llama_cpp.__file__).parent
        found = sorted(p for p in (pkg / "lib").iterdir() if p.is_file() and _LIB.search(p.name))
        backends = pkg.parent / "bin"
        if backends.is_dir():
            found += sorted(backends.glob("libggml-*.so"))
        libs = [LibFile(p.name, p.stat().st_size, _file_opener(p)) for p in found]
    names = {f.name for f in libs}
    if "libllama.so" not in names:
        raise BundleError(f"runtimes.{rt.name}: no libllama.so in {wheel or 'the installed llama_cpp'}")
    return sorted(_drop_aliases(libs), key=lambda f: f.name)


def _drop_aliases(libs: list[LibFile]) -> list[LibFile]:
    """Wheels cannot hold symlinks, so ``libX.so``, ``libX.so.0`` and ``libX.so.0.25.3`` are three
    copies. Keep ``libX.so`` (what llama_cpp dlopens) and ``libX.so.0`` (the SONAME that other
    libraries name); drop longer names when the SONAME form is there."""
    names = {f.name for f in libs}
    out = []
    for f in libs:
        m = re.match(r"^(.*\.so\.\d+)(\.\d+)+$", f.name)
        if m and m.group(1) in names:
            continue
        out.append(f)
    return out


def gpu_support_libs(rt: RuntimeSpec, *, python: str, platform_tag: str) -> list[LibFile]:
    """The NVIDIA redistributable libraries a cuda runtime needs (none for cpu; ROCm comes with the host)."""
    if rt.family != "cuda":
        return []
    major = str(rt.facts.get("cuda", "12")).split(".")[0] or "12"
    pkgs = CUDA_LIB_WHEELS.get(major)
    if not pkgs:
        raise BundleError(f"runtimes.{rt.name}: no known CUDA {major} library wheels")
    dest = cache_dir() / "cuda" / major
    wheels = download_wheels(pkgs, python=python, platform_tag=platform_tag, dest=dest)
    out: list[LibFile] = []
    for w in wheels:
        out += _zip_libs(w, re.compile(r"^nvidia/[^/]+/lib/"))
    return sorted(_drop_aliases(out), key=lambda f: f.name)


def wheel_licenses(wheel: Path) -> Iterator[tuple[str, bytes]]:
    """License files inside a wheel's dist-info (or, failing that, its License: field)."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if ".dist-info/" in n and _LICENSE.search(n)]
        for n in sorted(names):
            yield n.split(".dist-info/", 1)[1].replace("licenses/", "", 1), zf.read(n)
        if not names:
            meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
            if meta:
                text = zf.read(meta).decode(errors="replace")
                lines = [ln for ln in text.split("\n\n", 1)[0].splitlines()
                         if ln.startswith(("License:", "License-Expression:", "Classifier: License"))]
                if lines:
                    yield "METADATA-license.txt", ("\n".join(lines) + "\n").encode()


def dist_of(wheel: Path) -> str:
    return wheel.name.split("-")[0]


# ---------------------------------------------------------------------------------------------
# the whole wheelhouse
@dataclass(frozen=True)
class Wheelhouse:
    wheels: list[Path]                  # every wheel for the bundle's wheels/
    pip: dict[str, str]                 # target python -> pip wheel file name
    runtime_wheels: dict[str, Path | None]


def build_wheelhouse(spec: BundleSpec, work: Path) -> Wheelhouse:
    """Collect every wheel the target needs; ``work`` holds the ones built here."""
    built = work / "built"
    own = build_llmcrate_wheel(built, epoch=spec.created)
    cpu_py = spec.python[-1]
    rt_wheels = {rt.name: runtime_wheel(rt, version=spec.llama_cpp_python, python=cpu_py,
                                        platform_tag=spec.platform) for rt in spec.runtimes}
    llama = rt_wheels["cpu"]
    if llama is None:
        llama = repack_installed("llama_cpp_python", built, epoch=spec.created)
    # the cpu runtime's wheel is also what pip installs on the target, for every target Python
    unfit = [py for py in spec.python if not wheel_runs_on(llama, py)]
    if unfit:
        raise BundleError(f"runtimes.cpu: {llama.name} does not install on Python {', '.join(unfit)}; "
                          "use a py3-none wheel (llama-cpp-python's own builds are) or a source build")
    deps = [r for r in requires_of_wheel(own) if canonicalize_name(Requirement(r).name) != "llama-cpp-python"
            and not (Requirement(r).marker and "extra" in str(Requirement(r).marker))]
    deps += [r for r in requires_of_wheel(llama)
             if not (Requirement(r).marker and "extra" in str(Requirement(r).marker))]
    wheels: set[Path] = {own, llama}
    pip_for: dict[str, str] = {}
    if spec.wheels.source == "installed":
        for dist in installed_closure([*deps, "pip"], exclude=["llmcrate", "llama-cpp-python"]):
            wheels.add(repack_installed(dist, built, epoch=spec.created))
    else:
        for py in spec.python:
            dest = cache_dir() / "wheelhouse" / f"cp{py.replace('.', '')}-{spec.platform}"
            wheels.update(download_wheels([*deps, "pip"], python=py, platform_tag=spec.platform, dest=dest,
                                          index_url=spec.wheels.index_url, find_links=spec.wheels.find_links,
                                          offline=spec.wheels.offline))
    by_name: dict[str, Path] = {}
    for w in wheels:
        if w.name in by_name and by_name[w.name] != w:
            continue
        by_name[w.name] = w
    pips = sorted((w for w in by_name.values() if dist_of(w) == "pip"), key=_version_key)
    for py in spec.python:
        ok = [w for w in pips if _requires_python_ok(w, py)]
        if not ok:
            raise BundleError(f"python: no pip wheel runs on Python {py}")
        pip_for[py] = ok[-1].name
    keep_pips = set(pip_for.values())
    final = [w for n, w in sorted(by_name.items()) if dist_of(w) != "pip" or n in keep_pips]
    return Wheelhouse(wheels=final, pip=pip_for, runtime_wheels=rt_wheels)


def wheel_runs_on(wheel: Path, python: str) -> bool:
    """Whether a wheel's python/abi tags accept CPython ``python`` ("3.11")."""
    parts = wheel.name[:-4].split("-")
    pys, abis = parts[-3].split("."), parts[-2].split(".")
    cp = "cp" + python.replace(".", "")
    minor = int(python.split(".")[1])
    ok_py = any(t in ("py3", cp) or (re.fullmatch(r"cp3\d+", t) is not None and int(t[3:]) <= minor
                                     and "abi3" in abis) for t in pys)
    ok_abi = any(a in ("none", "abi3", cp) for a in abis)
    return ok_py and ok_abi


def _version_key(wheel: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", wheel.name.split("-")[1])[:4])


def _requires_python_ok(wheel: Path, python: str) -> bool:
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # pragma: no cover
        from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[assignment]
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        for ln in zf.read(meta).decode().splitlines():
            if ln.startswith("Requires-Python:"):
                return SpecifierSet(ln.split(":", 1)[1].strip()).contains(f"{python}.99")
    return True


def glibc_min(wheels: Iterable[Path]) -> list[int]:
    """The newest glibc any wheel's manylinux tag asks for (``[2, 17]``)."""
    best = (2, 17)
    for w in wheels:
        plat = w.name[:-4].split("-")[-1]
        options = []
        for tag in plat.split("."):
            m = re.match(r"manylinux_(\d+)_(\d+)_", tag)
            if m:
                options.append((int(m.group(1)), int(m.group(2))))
            elif tag.startswith("manylinux2014"):
                options.append((2, 17))
            elif tag.startswith("manylinux2010"):
                options.append((2, 12))
            elif tag.startswith("manylinux1"):
                options.append((2, 5))
        if options:
            best = max(best, min(options))
    return list(best)
