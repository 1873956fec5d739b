"""The bundle spec (YAML): what goes into an offline bundle. Every error names the key.

    name: demo                       # [A-Za-z0-9._-], the tar is <name>-<version>.tar
    version: "1.0"
    created: 2026-01-01              # optional; else SOURCE_DATE_EPOCH, else 0 (reproducible)
    models:
      - name: qwen2.5:0.5b           # any pull reference (registry, host:port/ns/m:tag, hf.co/...)
        insecure: false              # plain-http registry
        as: qwen:latest              # name on the target
      - modelfile: ./Modelfile       # relative to the spec file
        as: mybot:latest             # required for a Modelfile
    runtimes:                        # cpu is always included
      cpu: {}                        # portable source build (cached)
      cuda12: {index: URL, cuda: "12.4"}        # or {wheel: PATH} or {build: {cmake_args: "..."}}
      rocm6: {build: {cmake_args: "-DGGML_HIP=on -DAMDGPU_TARGETS=gfx1100"}, gfx: [gfx1100]}
      # {installed: true}: the llama.cpp libraries of the llama_cpp package this Python runs
    python: ["3.10", "3.11", "3.12"]
    platform: manylinux2014_x86_64
    wheels: {source: download|installed, index_url: URL, find_links: [DIR], offline: false}
    service: {host: "0.0.0.0:11434", keep_alive: 24h, num_parallel: 2, max_loaded_models: 2,
              context_length: 4096, env: {KEY: value}}
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from runtime.config import parse_duration, parse_host
from runtime.errors import ConfigError, LlmcrateError
from runtime.models.names import HFFileRef, LocalPath, parse_name, parse_reference

_BUNDLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RUNTIME_NAME = re.compile(r"^(cpu|cuda\d*|rocm\d*)$")
_PY = re.compile(r"^3\.\d{1,2}$")
_PLATFORM = re.compile(r"^(manylinux\d*|manylinux_\d+_\d+)_(x86_64|aarch64)$")
PORTABLE_CPU_CMAKE = "-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON"
DEFAULT_LLAMA_CPP_VERSION = "0.3.36"


@dataclass(frozen=True)
class ModelSpec:
    ref: str | None          # pull reference, or None for a Modelfile
    modelfile: Path | None
    target: str              # full name on the target (host/ns/model:tag)
    insecure: bool = False


@dataclass(frozen=True)
class RuntimeSpec:
    name: str                # directory name: cpu, cuda12, rocm6
    kind: Literal["build", "wheel", "index", "installed"]
    wheel: Path | None = None
    index: str | None = None
    cmake_args: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)  # cuda version, gfx targets -> bundle.json

    @property
    def family(self) -> str:
        return re.match(r"[a-z]+", self.name).group(0)  # type: ignore[union-attr]


@dataclass(frozen=True)
class WheelsSpec:
    source: Literal["download", "installed"] = "download"
    index_url: str | None = None
    find_links: tuple[Path, ...] = ()
    offline: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    host: str = "0.0.0.0:11434"
    keep_alive: str = "5m"
    num_parallel: int = 1
    max_loaded_models: int = 1
    context_length: int = 4096
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BundleSpec:
    name: str
    version: str
    models: tuple[ModelSpec, ...]
    runtimes: tuple[RuntimeSpec, ...]
    python: tuple[str, ...]
    platform: str
    wheels: WheelsSpec
    service: ServiceSpec
    created: int
    llama_cpp_python: str
    base_dir: Path

    @property
    def top(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def arch(self) -> str:
        return self.platform.rsplit("_", 1)[-1] if not self.platform.endswith("x86_64") else "x86_64"


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def err(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}", reason)

    def mapping(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.err(key, f"must be a mapping, got {type(value).__name__}")
        for k in value:
            if k not in allowed:
                raise self.err(f"{key}.{k}" if key else str(k),
                               f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, value: Any, key: str) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.err(key, f"must be a string, got {type(value).__name__}")
        return str(value)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.err(key, "must be true or false")
        return value

    def integer(self, value: Any, key: str, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.err(key, f"must be a whole number >= {minimum}")
        return value


def _created(value: Any, ctx: _Ctx, env: Mapping[str, str]) -> int:
    if value is None:
        sde = env.get("SOURCE_DATE_EPOCH")
        if sde:
            if not sde.isdigit():
                raise ctx.err("SOURCE_DATE_EPOCH", "must be whole seconds since 1970")
            return int(sde)
        return 0
    if isinstance(value, bool):
        raise ctx.err("created", "must be a date, a timestamp or seconds since 1970")
    if isinstance(value, int):
        return value
    if isinstance(value, _dt.datetime):
        return int(value.replace(tzinfo=value.tzinfo or _dt.timezone.utc).timestamp())
    if isinstance(value, _dt.date):
        return int(_dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp())
    try:
        d = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ctx.err("created", f"invalid date {value!r}") from None
    return int(d.replace(tzinfo=d.tzinfo or _dt.timezone.utc).timestamp())


def _model(item: Any, i: int, ctx: _Ctx, base: Path) -> ModelSpec:
    key = f"models[{i}]"
    if isinstance(item, str):
        item = {"name": item}
    m = ctx.mapping(item, key, {"name", "modelfile", "as", "insecure"})
    if ("name" in m) == ("modelfile" in m):
        raise ctx.err(key, "needs exactly one of 'name' or 'modelfile'")
    insecure = ctx.boolean(m.get("insecure", False), f"{key}.insecure")
    target = None
    if "as" in m:
        try:
            target = str(parse_name(ctx.string(m["as"], f"{key}.as")))
        except LlmcrateError as e:
            raise ctx.err(f"{key}.as", str(e)) from None
    if "modelfile" in m:
        path = Path(os.path.expanduser(ctx.string(m["modelfile"], f"{key}.modelfile")))
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ctx.err(f"{key}.modelfile", f"no such file {path}")
        if target is None:
            raise ctx.err(f"{key}.as", "a Modelfile model needs a name ('as: mybot:latest')")
        return ModelSpec(ref=None, modelfile=path, target=target, insecure=insecure)
    ref = ctx.string(m["name"], f"{key}.name")
    try:
        parsed = parse_reference(ref)
    except LlmcrateError as e:
        raise ctx.err(f"{key}.name", str(e)) from None
    if isinstance(parsed, LocalPath):
        raise ctx.err(f"{key}.name", f"{ref!r} is a file path: use 'modelfile:' with a Modelfile "
                                     f"that says FROM {ref}")
    if target is None:
        if isinstance(parsed, HFFileRef):
            raise ctx.err(f"{key}.as", "an hf:// file needs a name on the target ('as: name:tag')")
        target = str(parsed)
    return ModelSpec(ref=ref, modelfile=None, target=target, insecure=insecure)


def _runtime(name: Any, value: Any, ctx: _Ctx, base: Path) -> RuntimeSpec:
    key = f"runtimes.{name}"
    if not isinstance(name, str) or not _RUNTIME_NAME.match(name):
        raise ctx.err(key, "runtime names are cpu, cuda<N> or rocm<N> (e.g. cuda12, rocm6)")
    r = ctx.mapping(value, key, {"wheel", "index", "build", "installed", "cuda", "gfx"})
    sources = [k for k in ("wheel", "index", "build", "installed") if k in r]
    if len(sources) > 1:
        raise ctx.err(key, f"choose one of wheel, index, build, installed (got {', '.join(sources)})")
    facts: dict[str, Any] = {}
    if "cuda" in r:
        facts["cuda"] = ctx.string(r["cuda"], f"{key}.cuda")
    if "gfx" in r:
        if not isinstance(r["gfx"], list) or not all(isinstance(g, str) for g in r["gfx"]):
            raise ctx.err(f"{key}.gfx", "must be a list like [gfx1100, gfx90a]")
        facts["gfx"] = list(r["gfx"])
    if name.startswith("cuda") and "cuda" not in facts and name != "cuda":
        facts["cuda"] = name[4:]
    kind = sources[0] if sources else "build"
    if kind == "wheel":
        p = Path(os.path.expanduser(ctx.string(r["wheel"], f"{key}.wheel")))
        p = p if p.is_absolute() else base / p
        if not p.is_file() or not p.name.endswith(".whl"):
            raise ctx.err(f"{key}.wheel", f"no such wheel file {p}")
        return RuntimeSpec(name, "wheel", wheel=p, facts=facts)
    if kind == "index":
        url = ctx.string(r["index"], f"{key}.index")
        if not re.match(r"^(https?|file)://", url):
            raise ctx.err(f"{key}.index", "must be an http(s):// or file:// URL")
        return RuntimeSpec(name, "index", index=url, facts=facts)
    if kind == "installed":
        if not ctx.boolean(r["installed"], f"{key}.installed"):
            raise ctx.err(f"{key}.installed", "only 'true' makes sense here")
        return RuntimeSpec(name, "installed", facts=facts)
    b = ctx.mapping(r.get("build"), f"{key}.build", {"cmake_args"})
    default = PORTABLE_CPU_CMAKE if name == "cpu" else ""
    args = ctx.string(b.get("cmake_args", default), f"{key}.build.cmake_args")
    if name != "cpu" and not args:
        raise ctx.err(f"{key}.build.cmake_args", "a GPU build needs its CMake flags "
                                                 "(e.g. -DGGML_CUDA=on)")
    return RuntimeSpec(name, "build", cmake_args=args, facts=facts)


def parse_spec(data: Any, *, base_dir: Path, source: str = "spec",
               env: Mapping[str, str] | None = None) -> BundleSpec:
    """Validate a loaded YAML document into a :class:`BundleSpec`; ConfigError names the bad key."""
    env = os.environ if env is None else env
    ctx = _Ctx(source)
    top = ctx.mapping(data, "", {"name", "version", "created", "models", "runtimes", "python",
                                 "platform", "wheels", "service", "llama_cpp_python", "description"})
    for req in ("name", "version", "models"):
        if req not in top:
            raise ctx.err(req, "is required")
    name = ctx.string(top["name"], "name")
    if not _BUNDLE_NAME.match(name):
        raise ctx.err("name", "use letters, digits, '.', '_' and '-' (64 at most)")
    version = ctx.string(top["version"], "version")
    if not _BUNDLE_NAME.match(version):
        raise ctx.err("version", "use letters, digits, '.', '_' and '-'")
    if not isinstance(top["models"], list) or not top["models"]:
        raise ctx.err("models", "must be a non-empty list")
    models = tuple(_model(item, i, ctx, base_dir) for i, item in enumerate(top["models"]))
    seen: dict[str, int] = {}
    for i, m in enumerate(models):
        k = m.target.lower()
        if k in seen:
            raise ctx.err(f"models[{i}]", f"{m.target} is already models[{seen[k]}]'s name on the target")
        seen[k] = i
    rts = dict(ctx.mapping(top.get("runtimes"), "runtimes", set(top.get("runtimes") or {})))
    rts.setdefault("cpu", {})
    runtimes = tuple(_runtime(n, rts[n], ctx, base_dir) for n in sorted(rts, key=lambda n: (n != "cpu", n)))
    py = top.get("python", [f"{sys.version_info[0]}.{sys.version_info[1]}"])
    if isinstance(py, (str, float)):
        py = [py]
    if not isinstance(py, list) or not py:
        raise ctx.err("python", 'must be a list like ["3.10", "3.11"]')
    pys = []
    for i, v in enumerate(py):
        s = ctx.string(v, f"python[{i}]")
        if not _PY.match(s) or int(s.split(".")[1]) < 9:
            raise ctx.err(f"python[{i}]", f"{s!r}: target interpreters are 3.9 or newer, written like \"3.11\"")
        pys.append(s)
    pys = sorted(set(pys), key=lambda s: int(s.split(".")[1]))
    plat = ctx.string(top.get("platform", "manylinux2014_x86_64"), "platform")
    if not _PLATFORM.match(plat):
        raise ctx.err("platform", "must be a manylinux tag such as manylinux2014_x86_64 or "
                                  "manylinux_2_28_aarch64")
    w = ctx.mapping(top.get("wheels"), "wheels", {"source", "index_url", "find_links", "offline"})
    source = ctx.string(w.get("source", "download"), "wheels.source")
    if source not in ("download", "installed"):
        raise ctx.err("wheels.source", "must be 'download' (pip download per target Python) or "
                                       "'installed' (repack this interpreter's packages)")
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if source == "installed" and pys != [mine]:
        raise ctx.err("wheels.source", f"'installed' can only carry this interpreter's Python ({mine}); "
                                       f"python lists {', '.join(pys)}")
    links = w.get("find_links", [])
    if isinstance(links, str):
        links = [links]
    if not isinstance(links, list):
        raise ctx.err("wheels.find_links", "must be a list of folders")
    find_links = tuple((base_dir / Path(os.path.expanduser(ctx.string(x, "wheels.find_links")))).resolve()
                       for x in links)
    wheels = WheelsSpec(source=source,  # type: ignore[arg-type]
                        index_url=ctx.string(w["index_url"], "wheels.index_url") if "index_url" in w else None,
                        find_links=find_links,
                        offline=ctx.boolean(w.get("offline", False), "wheels.offline"))
    svc = ctx.mapping(top.get("service"), "service", {"host", "keep_alive", "num_parallel",
                                                     "max_loaded_models", "context_length", "env"})
    host = ctx.string(svc.get("host", "0.0.0.0:11434"), "service.host")
    try:
        parse_host(host)
    except ConfigError as e:
        raise ctx.err("service.host", str(e)) from None
    keep_alive = ctx.string(svc.get("keep_alive", "5m"), "service.keep_alive")
    try:
        parse_duration(keep_alive)
    except ConfigError as e:
        raise ctx.err("service.keep_alive", str(e)) from None
    senv = ctx.mapping(svc.get("env"), "service.env", set(svc.get("env") or {}))
    clean_env = {}
    for k, v in senv.items():
        if not isinstance(k, str) or not re.match(r"^[A-Z_][A-Z0-9_]*$", k):
            raise ctx.err(f"service.env.{k}", "variable names are upper-case letters, digits and _")
        clean_env[k] = ctx.string(v, f"service.env.{k}")
    service = ServiceSpec(host=host, keep_alive=keep_alive,
                          num_parallel=ctx.integer(svc.get("num_parallel", 1), "service.num_parallel"),
                          max_loaded_models=ctx.integer(svc.get("max_loaded_models", 1),
                                                        "service.max_loaded_models"),
                          context_length=ctx.integer(svc.get("context_length", 4096),
                                                     "service.context_length", 16),
                          env=dict(sorted(clean_env.items())))
    return BundleSpec(name=name, version=version, models=models, runtimes=runtimes, python=tuple(pys),
                      platform=plat, wheels=wheels, service=service,
                      created=_created(top.get("created"), ctx, env),
                      llama_cpp_python=ctx.string(top.get("llama_cpp_python", DEFAULT_LLAMA_CPP_VERSION),
                                                  "llama_cpp_python"),
                      base_dir=base_dir)


def load_spec(path: Path, *, env: Mapping[str, str] | None = None) -> BundleSpec:
    """Read and validate a spec file."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(str(path), f"cannot read: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(str(path), f"not valid YAML{where}: {getattr(e, 'problem', e)}") from e
    return parse_spec(data, base_dir=path.resolve().parent, source=str(path), env=env)
