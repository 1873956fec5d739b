"""GPU/CPU probes and the choice of llama.cpp runtime, on the target host.

Stdlib only: ``start.sh`` and ``install.sh`` run this module before anything else is installed
(``python3 -m runtime.serve.hardware select --runtimes DIR``; ``... report``).

Backends form a lazy registry (:data:`BACKENDS`, family name -> "module:attr"): a bundled runtime
directory ``runtimes/<name>/`` belongs to the family its name starts with (``cuda12`` -> cuda,
``rocm6`` -> rocm, ``cpu`` -> cpu). ``auto`` tries cuda, then rocm, then cpu; a GPU runtime that
is absent, unsupported by the driver, or whose libraries fail to load falls back to cpu with the
reason logged. Every probe takes its roots (``/``, ``PATH``) as arguments so tests can fake them.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

#: family -> "module:attr" of its :class:`Backend`; imported only when asked for.
BACKENDS: dict[str, str] = {
    "cuda": "runtime.serve.hardware:CudaBackend",
    "rocm": "runtime.serve.hardware:RocmBackend",
    "cpu": "runtime.serve.hardware:CpuBackend",
}
#: order ``auto`` tries the families in.
AUTO_ORDER = ("cuda", "rocm", "cpu")

#: Oldest Linux driver for each CUDA major version (NVIDIA's minor-version compatibility table).
MIN_DRIVER_FOR_CUDA: dict[int, tuple[int, ...]] = {11: (450, 80, 2), 12: (525, 60, 13), 13: (580, 0, 0)}


@dataclass(frozen=True)
class Probe:
    """What one backend found on this host."""

    ok: bool
    reason: str
    info: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Host:
    """Where probes look: the filesystem root and the PATH for tools (both fakeable)."""

    root: Path = Path("/")
    path: str | None = None  # PATH used to find nvidia-smi; None = os.environ["PATH"]

    def which(self, tool: str) -> str | None:
        return shutil.which(tool, path=self.path if self.path is not None else os.environ.get("PATH"))

    def file(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")


class Backend(ABC):
    """One family of llama.cpp builds (cpu, cuda, rocm)."""

    family: str

    @abstractmethod
    def probe(self, host: Host, *, runtime: Mapping[str, object] | None = None) -> Probe:
        """Whether this host can run the bundled runtime described by ``runtime`` (bundle.json entry)."""


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def nvidia_smi(host: Host) -> dict[str, object] | None:
    """Driver version, CUDA version and GPUs from ``nvidia-smi``; None when absent or failing."""
    exe = host.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe], capture_output=True, text=True, timeout=20, check=False)
        q = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total",
                            "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        logger.info("nvidia-smi failed: %s", e)
        return {"error": str(e)}
    if out.returncode != 0 or q.returncode != 0:
        msg = (out.stderr or out.stdout or q.stderr).strip().splitlines()
        return {"error": msg[0] if msg else f"nvidia-smi exited {out.returncode}"}
    gpus = []
    driver = ""
    for line in q.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            driver = driver or parts[1]
            gpus.append({"name": parts[0], "memory_mib": int(parts[2]) if parts[2].isdigit() else None})
    m = re.search(r"CUDA Version:\s*([\d.]+)", out.stdout)
    if not driver:
        d = re.search(r"Driver Version:\s*([\d.]+)", out.stdout)
        driver = d.group(1) if d else ""
    return {"driver": driver, "cuda": m.group(1) if m else "", "gpus": gpus}


def rocm_gfx_targets(host: Host) -> list[str]:
    """gfx names (``gfx1100``) of the GPUs the amdgpu kfd driver exposes in sysfs."""
    nodes = host.file("/sys/class/kfd/kfd/topology/nodes")
    targets: list[str] = []
    if not nodes.is_dir():
        return targets
    for node in sorted(nodes.iterdir()):
        try:
            text = (node / "properties").read_text()
        except OSError:
            continue
        m = re.search(r"^gfx_target_version\s+(\d+)", text, re.M)
        if not m or int(m.group(1)) == 0:  # 0 = a CPU node
            continue
        v = int(m.group(1))
        major, minor, step = v // 10000, (v // 100) % 100, v % 100
        targets.append(f"gfx{major}{minor:x}{step:x}")
    return targets


def cpu_flags(host: Host) -> set[str]:
    """The ``flags`` of the first CPU in /proc/cpuinfo (empty when unreadable)."""
    try:
        text = host.file("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    m = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


def _strings(value: object) -> list[str]:
    """A JSON list of names from bundle.json or a probe, as strings (anything else: none)."""
    return [str(x) for x in value] if isinstance(value, (list, tuple)) else []


def _dicts(value: object) -> list[Mapping[str, object]]:
    return [x for x in value if isinstance(x, Mapping)] if isinstance(value, (list, tuple)) else []


class CpuBackend(Backend):
    family = "cpu"

    def probe(self, host: Host, *, runtime: Mapping[str, object] | None = None) -> Probe:
        flags = cpu_flags(host)
        need = _strings((runtime or {}).get("cpu_flags"))
        missing = [f for f in need if f not in flags]
        if flags and missing:
            return Probe(False, f"CPU lacks {', '.join(missing)}", {"flags": sorted(flags)})
        simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "neon", "asimd") if f in flags]
        return Probe(True, "CPU", {"simd": simd})


class CudaBackend(Backend):
    family = "cuda"

    def probe(self, host: Host, *, runtime: Mapping[str, object] | None = None) -> Probe:
        smi = nvidia_smi(host)
        if smi is None:
            return Probe(False, "no NVIDIA driver (nvidia-smi not found)")
        if "error" in smi:
            return Probe(False, f"nvidia-smi failed: {smi['error']}", smi)
        if not smi.get("gpus"):
            return Probe(False, "nvidia-smi lists no GPU", smi)
        driver = _version_tuple(str(smi.get("driver", "")))
        cuda_needed = str((runtime or {}).get("cuda", "") or "")
        if cuda_needed:
            major = _version_tuple(cuda_needed)[:1]
            floor = MIN_DRIVER_FOR_CUDA.get(major[0]) if major else None
            if floor and driver < floor:
                return Probe(False, f"NVIDIA driver {smi['driver']} is too old for CUDA {cuda_needed} "
                                    f"(needs {'.'.join(map(str, floor))} or newer)", smi)
            have = _version_tuple(str(smi.get("cuda", "")))
            if have and have[:1] < major:
                return Probe(False, f"driver supports CUDA {smi['cuda']}, runtime needs {cuda_needed}", smi)
        names = ", ".join(str(g.get("name")) for g in _dicts(smi.get("gpus")))
        return Probe(True, f"NVIDIA {names} (driver {smi['driver']}, CUDA {smi.get('cuda') or '?'})", smi)


class RocmBackend(Backend):
    family = "rocm"

    def probe(self, host: Host, *, runtime: Mapping[str, object] | None = None) -> Probe:
        if not host.file("/dev/kfd").exists():
            return Probe(False, "no AMD ROCm driver (/dev/kfd missing)")
        targets = rocm_gfx_targets(host)
        if not targets:
            return Probe(False, "/dev/kfd present but no AMD GPU in /sys/class/kfd")
        supported = _strings((runtime or {}).get("gfx"))
        usable = [t for t in targets if not supported or t in supported]
        if not usable:
            return Probe(False, f"GPU {', '.join(targets)} not among the runtime's targets "
                                f"({', '.join(supported)})", {"gfx": targets})
        return Probe(True, f"AMD {', '.join(usable)}", {"gfx": targets})


def get_backend(family: str) -> Backend:
    """Import and instantiate the backend registered for ``family``."""
    target = BACKENDS.get(family)
    if target is None:
        raise ValueError(f"unknown runtime family {family!r} (known: {', '.join(BACKENDS)})")
    module, attr = target.split(":")
    cls = getattr(importlib.import_module(module), attr)
    backend: Backend = cls()
    return backend


def family_of(runtime_name: str) -> str:
    """``cuda12`` -> ``cuda``; ``rocm6`` -> ``rocm``; ``cpu`` -> ``cpu``."""
    m = re.match(r"[a-z]+", runtime_name)
    return m.group(0) if m else runtime_name


@dataclass(frozen=True)
class Choice:
    name: str          # runtime directory name, e.g. "cuda12"
    path: Path
    reasons: tuple[str, ...]  # why earlier candidates were skipped, then why this one


def load_ggml_backends(lib_dir: Path) -> int:
    """Register the ggml backends of a ``GGML_BACKEND_DL`` build before llama.cpp is used.

    Such builds (the portable cpu runtime: ``GGML_CPU_ALL_VARIANTS``) keep each backend in its
    own ``libggml-<name>.so`` and register none until asked; llama-cpp-python never asks, and
    ggml's default search (the executable's folder, the working folder) would miss the runtime
    folder anyway. Loading ``libggml.so`` from ``lib_dir`` first makes it the one llama.cpp links
    to (same soname). Builds with backends linked in already report them: nothing is loaded.
    Returns the number of registered backends (0 when ``lib_dir`` has no ggml).
    """
    import ctypes

    path = lib_dir / "libggml.so"
    if not path.is_file():
        return 0
    lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    count = lib.ggml_backend_reg_count
    count.restype = ctypes.c_size_t
    if count() == 0 and hasattr(lib, "ggml_backend_load_all_from_path"):
        load = lib.ggml_backend_load_all_from_path
        load.argtypes = [ctypes.c_char_p]
        load(str(lib_dir).encode())
        logger.info("loaded %d ggml backends from %s", count(), lib_dir)
    return int(count())


def _load_check(lib_dir: Path, python: str) -> str | None:
    """Load llama.cpp from ``lib_dir`` in a child interpreter; None when it works, else why not."""
    env = dict(os.environ)
    env["LLAMA_CPP_LIB_PATH"] = str(lib_dir)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib_dir), env.get("LD_LIBRARY_PATH", "")) if p)
    code = ("import os, pathlib, sys\n"
            "from runtime.serve.hardware import load_ggml_backends\n"
            "load_ggml_backends(pathlib.Path(os.environ['LLAMA_CPP_LIB_PATH']))\n"
            "import llama_cpp\n"
            "sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 3)")
    try:
        r = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                           check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    if r.returncode == 3:
        return "library loaded but reports no GPU offload"
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit code {r.returncode}"
    return None


def choose_runtime(runtimes_dir: Path, *, forced: str | None = None, host: Host | None = None,
                   manifest: Mapping[str, Mapping[str, object]] | None = None,
                   load_check: bool = False, python: str = sys.executable) -> Choice:
    """Pick the runtime directory to serve with.

    Args:
        runtimes_dir: folder holding ``cpu/``, ``cuda12/``, ``rocm6/`` ...
        forced: ``LLMCRATE_RUNTIME`` (``auto``/``cpu``/``cuda``/``rocm`` or an exact directory name).
        host: probe roots (tests fake them).
        manifest: runtime name -> bundle.json facts (``cuda`` version, ``gfx`` list).
        load_check: also load a GPU runtime in a child interpreter before choosing it.
        python: interpreter for the load check.
    """
    host = host or Host()
    manifest = manifest or {}
    available = sorted(p.name for p in runtimes_dir.iterdir() if p.is_dir()) if runtimes_dir.is_dir() else []
    if "cpu" not in available:
        raise FileNotFoundError(f"no cpu runtime in {runtimes_dir}")
    reasons: list[str] = []
    want = (forced or "auto").strip().lower()
    if want in ("", "auto"):
        order = [n for fam in AUTO_ORDER for n in available if family_of(n) == fam]
    else:
        order = [n for n in available if n == want] or [n for n in available if family_of(n) == want]
        if not order:
            reasons.append(f"LLMCRATE_RUNTIME={forced}: no such runtime in this install "
                           f"(have {', '.join(available)})")
        order += ["cpu"]
    for name in order:
        fam = family_of(name)
        if fam not in BACKENDS:
            reasons.append(f"{name}: unknown runtime family")
            continue
        probe = get_backend(fam).probe(host, runtime=manifest.get(name))
        if not probe.ok and fam != "cpu":
            reasons.append(f"{name}: {probe.reason}")
            continue
        if fam != "cpu" and load_check:
            why = _load_check(runtimes_dir / name, python)
            if why is not None:
                reasons.append(f"{name}: failed to load: {why}")
                continue
        reasons.append(f"{name}: {probe.reason}")
        return Choice(name=name, path=runtimes_dir / name, reasons=tuple(reasons))
    raise AssertionError("cpu is always a candidate")  # pragma: no cover


def report(host: Host | None = None) -> dict[str, object]:
    """Every probe's result, for install.sh's preflight report."""
    host = host or Host()
    out: dict[str, object] = {}
    for fam in AUTO_ORDER:
        p = get_backend(fam).probe(host)
        out[fam] = {"ok": p.ok, "reason": p.reason, **p.info}
    return out


def _main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m runtime.serve.hardware")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sel = sub.add_parser("select", help="print the runtime to use: NAME<TAB>PATH; reasons on stderr")
    sel.add_argument("--runtimes", required=True, type=Path)
    sel.add_argument("--force", default=os.environ.get("LLMCRATE_RUNTIME"))
    sel.add_argument("--bundle-json", type=Path, help="bundle.json with the runtimes' facts")
    sel.add_argument("--no-load-check", action="store_true")
    sub.add_parser("report", help="print every probe as JSON")
    args = ap.parse_args(argv)
    if args.cmd == "report":
        print(json.dumps(report(), indent=2, sort_keys=True))
        return 0
    manifest: dict[str, Mapping[str, object]] = {}
    if args.bundle_json and args.bundle_json.is_file():
        manifest = json.loads(args.bundle_json.read_text()).get("runtimes", {})
    choice = choose_runtime(args.runtimes, forced=args.force, manifest=manifest,
                            load_check=not args.no_load_check)
    for r in choice.reasons:
        print(f"llmcrate: runtime {r}", file=sys.stderr)
    print(f"{choice.name}\t{choice.path}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
