"""Runtime choice with a fake nvidia-smi on PATH and fake sysfs/procfs roots."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.serve import hardware
from runtime.serve.hardware import Host, choose_runtime, cpu_flags, rocm_gfx_targets

SMI_HEADER = """+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI {driver}             Driver Version: {driver}     CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|   0  NVIDIA L4                      Off |   00000000:00:03.0 Off |                    0 |
+-----------------------------------------+------------------------+----------------------+
"""


def fake_smi(tmp_path: Path, *, driver: str = "550.54.15", cuda: str = "12.4", fail: bool = False) -> str:
    """A bin/ folder holding an nvidia-smi that answers like the real one; returns a PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    if fail:
        body = ('echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver. '
                'Make sure that the latest NVIDIA driver is installed and running." >&2\nexit 9\n')
    else:
        header = SMI_HEADER.format(driver=driver, cuda=cuda)
        body = (f'case "$1" in\n  --query-gpu=*) echo "NVIDIA L4, {driver}, 23034" ;;\n'
                f"  *) cat <<'EOF'\n{header}EOF\n;;\nesac\n")
    smi.write_text("#!/bin/sh\n" + body)
    smi.chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


def fake_root(tmp_path: Path, *, kfd: bool = False, gfx: tuple[int, ...] = (), flags: str = "fpu sse4_2 avx avx2 fma") -> Path:
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc/cpuinfo").write_text(f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n\n")
    if kfd:
        (root / "dev").mkdir(exist_ok=True)
        (root / "dev/kfd").write_text("")
    nodes = root / "sys/class/kfd/kfd/topology/nodes"
    for i, v in enumerate((0, *gfx)):  # node 0 is the CPU (gfx_target_version 0)
        (nodes / str(i)).mkdir(parents=True, exist_ok=True)
        (nodes / str(i) / "properties").write_text(f"cpu_cores_count 0\ngfx_target_version {v}\nsimd_count 0\n")
    return root


def runtimes(tmp_path: Path, *names: str) -> Path:
    d = tmp_path / "runtimes"
    for n in ("cpu", *names):
        (d / n).mkdir(parents=True, exist_ok=True)
    return d


def test_probes_read_fake_roots(tmp_path: Path) -> None:
    root = fake_root(tmp_path, kfd=True, gfx=(110000, 90010))
    host = Host(root=root, path="")
    assert rocm_gfx_targets(host) == ["gfx1100", "gfx90a"]
    assert {"avx2", "sse4_2"} <= cpu_flags(host)
    smi = hardware.nvidia_smi(Host(root=root, path=fake_smi(tmp_path)))
    assert smi == {"driver": "550.54.15", "cuda": "12.4", "gpus": [{"name": "NVIDIA L4", "memory_mib": 23034}]}


def test_auto_prefers_nvidia_then_rocm_then_cpu(tmp_path: Path) -> None:
    rt = runtimes(tmp_path, "cuda12", "rocm6")
    root = fake_root(tmp_path, kfd=True, gfx=(110000,))
    facts = {"cuda12": {"cuda": "12.4"}, "rocm6": {"gfx": ["gfx1100"]}}
    c = choose_runtime(rt, host=Host(root=root, path=fake_smi(tmp_path)), manifest=facts)
    assert c.name == "cuda12" and "NVIDIA L4" in c.reasons[-1]
    c = choose_runtime(rt, host=Host(root=root, path=""), manifest=facts)
    assert c.name == "rocm6"
    assert c.reasons[0].startswith("cuda12: no NVIDIA driver")
    c = choose_runtime(rt, host=Host(root=fake_root(tmp_path / "plain"), path=""), manifest=facts)
    assert c.name == "cpu"
    assert any("/dev/kfd missing" in r for r in c.reasons)


def test_old_driver_and_failing_smi_fall_back_to_cpu(tmp_path: Path) -> None:
    rt = runtimes(tmp_path, "cuda12")
    root = fake_root(tmp_path)
    c = choose_runtime(rt, host=Host(root=root, path=fake_smi(tmp_path, driver="470.82.01", cuda="11.4")),
                       manifest={"cuda12": {"cuda": "12.4"}})
    assert c.name == "cpu"
    assert "driver 470.82.01 is too old for CUDA 12.4" in c.reasons[0]
    c = choose_runtime(rt, host=Host(root=root, path=fake_smi(tmp_path / "f", fail=True)))
    assert c.name == "cpu" and "couldn't communicate with the NVIDIA driver" in c.reasons[0]


def test_unsupported_gfx_falls_back(tmp_path: Path) -> None:
    rt = runtimes(tmp_path, "rocm6")
    root = fake_root(tmp_path, kfd=True, gfx=(90006,))
    c = choose_runtime(rt, host=Host(root=root, path=""), manifest={"rocm6": {"gfx": ["gfx1100"]}})
    assert c.name == "cpu" and "gfx906 not among the runtime's targets" in c.reasons[0]


def test_forced_runtime(tmp_path: Path) -> None:
    rt = runtimes(tmp_path, "cuda12")
    host = Host(root=fake_root(tmp_path), path=fake_smi(tmp_path))
    assert choose_runtime(rt, forced="cpu", host=host).name == "cpu"
    assert choose_runtime(rt, forced="cuda", host=host).name == "cuda12"
    c = choose_runtime(rt, forced="rocm", host=host)
    assert c.name == "cpu" and "no such runtime" in c.reasons[0]
    # forcing a GPU runtime the host cannot run still falls back, with the reason
    c = choose_runtime(rt, forced="cuda", host=Host(root=fake_root(tmp_path), path=""))
    assert c.name == "cpu" and "no NVIDIA driver" in c.reasons[0]


def test_gpu_runtime_that_fails_to_load_falls_back_to_cpu(tmp_path: Path) -> None:
    rt = runtimes(tmp_path, "cuda12")
    (rt / "cuda12" / "libllama.so").write_bytes(b"\x7fELF not really a library")
    host = Host(root=fake_root(tmp_path), path=fake_smi(tmp_path))
    c = choose_runtime(rt, host=host, load_check=True)
    assert c.name == "cpu"
    assert c.reasons[0].startswith("cuda12: failed to load:")


def test_select_command_prints_choice_and_reasons(tmp_path: Path) -> None:
    rt = runtimes(tmp_path, "cuda12")
    env = {**os.environ, "PATH": "/usr/bin:/bin", "LLMCRATE_RUNTIME": "auto"}
    r = subprocess.run([sys.executable, "-m", "runtime.serve.hardware", "select", "--runtimes", str(rt)],
                       capture_output=True, text=True, env=env, check=True)
    assert r.stdout == f"cpu\t{rt / 'cpu'}\n"
    assert "runtime cuda12: no NVIDIA driver" in r.stderr


def test_no_cpu_runtime_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "runtimes" / "cuda12").mkdir(parents=True)
    with pytest.raises(FileNotFoundError):
        choose_runtime(tmp_path / "runtimes")


def test_backends_loaded_from_the_runtime_folder_before_llama_cpp(tiny_gguf: Path) -> None:
    """start.sh's order: ggml from the chosen runtime folder first, then llama_cpp, then a model."""
    import llama_cpp
    lib = Path(llama_cpp.__file__).parent / "lib"
    code = ("import os, pathlib, sys\n"
            "from runtime.serve.hardware import load_ggml_backends\n"
            "n = load_ggml_backends(pathlib.Path(os.environ['LLAMA_CPP_LIB_PATH']))\n"
            "import llama_cpp\n"
            "m = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, verbose=False)\n"
            "print(n, m.n_vocab())\n")
    env = {**os.environ, "LLAMA_CPP_LIB_PATH": str(lib)}
    r = subprocess.run([sys.executable, "-c", code, str(tiny_gguf)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    n, vocab = map(int, r.stdout.split())
    assert n >= 1 and vocab > 256
