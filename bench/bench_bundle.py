#!/usr/bin/env python3
"""Bundle build / install / verify against tar and sha256sum, side by side, on a 2 GB model.

    .venv/bin/python bench/bench_bundle.py [--size 2G] [--workdir /tmp/llmcrate-bench-bundle]

1. build: ``llmcrate bundle build`` of a model already in the store (weights streamed from the
   store, hashed on the way; ``--trust-store``: copied by the kernel without re-hashing) vs
   ``tar -cf`` of the same files (the extracted bundle folder); wall time and peak RSS, with
   the peak RSS of a tiny-model build beside it (memory flat = same peak for 0.4 MB and 2 GB);
2. install: ``tar -xf`` + ``install.sh --no-systemd`` (preflight, verify every digest, pip from
   the bundled wheels, models moved into the store) vs ``tar -xf`` alone;
3. verify: ``llmcrate bundle verify`` of the tar and of the extracted folder vs ``sha256sum`` of
   every file.
Everything runs from the page cache (inputs read once before timing). Prints one table.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
LLMCRATE = [sys.executable, "-c", "from runtime.cli import main; main(prog_name='llmcrate')"]


def timed(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command (GNU time reports the RSS)."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], env=env, cwd=cwd, capture_output=True, text=True,
                       check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return wall, int(r.stderr.strip().splitlines()[-1])


def warm(paths: list[Path]) -> None:
    for p in paths:
        for f in (p.rglob("*") if p.is_dir() else [p]):
            if f.is_file():
                with open(f, "rb") as fh:
                    while fh.read(1 << 24):
                        pass


def write_spec(folder: Path, gguf: Path, name: str) -> Path:
    """Two specs: one creating the model from a Modelfile (once), one packing it from the store."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Modelfile").write_text(f"FROM {gguf}\n")
    tail = f'runtimes:\n  cpu: {{installed: true}}\nwheels: {{source: installed}}\npython: ["{PY}"]\n'
    (folder / "create.yaml").write_text(f'name: {name}\nversion: "1"\nmodels:\n  - modelfile: ./Modelfile\n'
                                        f'    as: {name}:latest\n' + tail)
    spec = folder / "spec.yaml"
    spec.write_text(f'name: {name}\nversion: "1"\nmodels:\n  - {name}:latest\n' + tail)
    return spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="2G")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/llmcrate-bench-bundle"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_tiny_model import parse_size, write_tiny_gguf

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "OLLAMA_MODELS": str(work / "store"), "PYTHONPATH": str(ROOT)}
    env.pop("LLMCRATE_DEBUG", None)
    big = write_tiny_gguf(work / "big.gguf", size=parse_size(args.size), name="big")
    tiny = write_tiny_gguf(work / "tiny.gguf", name="tiny")
    rows: list[tuple[str, float, str]] = []
    size = big.stat().st_size

    # 1. build
    for gguf, name in ((tiny, "tiny"), (big, "big")):
        spec = write_spec(work / f"spec-{name}", gguf, name)
        subprocess.run([*LLMCRATE, "bundle", "build", str(spec.with_name("create.yaml")), "-o",
                        str(work / f"warmup-{name}.tar")],
                       env=env, check=True, capture_output=True)  # creates the model in the store once
        (work / f"warmup-{name}.tar").unlink()
    warm([work / "store"])
    subprocess.run(["sync"], check=True)
    _, rss_tiny = timed([*LLMCRATE, "bundle", "build", str(work / "spec-tiny/spec.yaml"), "-o",
                         str(work / "tiny.tar")], env=env)
    subprocess.run(["sync"], check=True)
    t_build, rss_build = timed([*LLMCRATE, "bundle", "build", str(work / "spec-big/spec.yaml"), "-o",
                                str(work / "big.tar")], env=env)
    subprocess.run(["sync"], check=True)
    t_trust, rss_trust = timed([*LLMCRATE, "bundle", "build", str(work / "spec-big/spec.yaml"), "--trust-store",
                                "-o", str(work / "trusted.tar")], env=env)
    (work / "trusted.tar").unlink()
    bundle = work / "big.tar"
    extracted = work / "x"
    extracted.mkdir()
    subprocess.run(["tar", "-xf", str(bundle), "-C", str(extracted)], check=True)
    folder = extracted / "big-1"
    warm([folder])
    subprocess.run(["sync"], check=True)
    t_tar, rss_tar = timed(["tar", "-cf", str(work / "plain.tar"), "-C", str(extracted), "big-1"])
    (work / "plain.tar").unlink()
    subprocess.run(["sync"], check=True)
    # the build fsyncs its output before renaming it into place; so does this tar
    plain = work / "plain.tar"
    t_tar_sync, _ = timed(["sh", "-c", f"tar -cf {plain} -C {extracted} big-1 && sync {plain}"])
    rows += [("build: llmcrate bundle build", t_build, f"peak RSS {rss_build / 1024:.0f} MiB "
              f"(tiny model: {rss_tiny / 1024:.0f} MiB); hashes + fsync"),
             ("build: bundle build --trust-store", t_trust, f"peak RSS {rss_trust / 1024:.0f} MiB; "
              "kernel copy, no re-hash; + fsync"),
             ("build: tar -cf same files", t_tar, f"peak RSS {rss_tar / 1024:.0f} MiB"),
             ("build: tar -cf + sync", t_tar_sync, "durable, like the build"),
             ("build ratio (vs tar -cf)", t_build / t_tar, "goal <= 1.1x"),
             ("build ratio (vs tar -cf + sync)", t_build / t_tar_sync, ""),
             ("build --trust-store ratio (vs tar -cf + sync)", t_trust / t_tar_sync, "")]
    (work / "plain.tar").unlink()

    # 3. verify (before install moves the blobs out of the folder)
    warm([bundle])
    t_vtar, _ = timed([*LLMCRATE, "bundle", "verify", str(bundle)], env=env)
    t_vdir, _ = timed([*LLMCRATE, "bundle", "verify", str(folder)], env=env)
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    t_sha, _ = timed(["sha256sum", *files])
    rows += [("verify: bundle verify (tar)", t_vtar, f"{size / t_vtar / 1e9:.2f} GB/s"),
             ("verify: bundle verify (folder)", t_vdir, f"{size / t_vdir / 1e9:.2f} GB/s"),
             ("verify: sha256sum every file", t_sha, f"{size / t_sha / 1e9:.2f} GB/s")]
    shutil.rmtree(extracted)

    # 2. install
    inst = work / "inst"
    inst.mkdir()
    warm([bundle])
    t_x, _ = timed(["tar", "-xf", str(bundle), "-C", str(inst)])
    shutil.rmtree(inst)
    inst.mkdir()
    host_env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "LLMCRATE_", "PYTHON"))}
    host_env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    script = (f'tar -xf {bundle} -C {inst} && {inst}/big-1/install.sh --prefix {work}/prefix '
              f'--no-systemd --yes --host 127.0.0.1:18999 >/dev/null')
    t_inst, _ = timed(["sh", "-c", script], env=host_env)
    rows += [("install: tar -xf + install.sh", t_inst, "preflight, verify, pip, models moved"),
             ("install: tar -xf alone", t_x, ""),
             ("install ratio", t_inst / t_x, "goal <= 1.2x")]

    print(f"\nbundle of a {size / 1e9:.2f} GB model on {platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d', time.gmtime())}")
    print(f"{'':46} {'seconds':>9}")
    for label, value, note in rows:
        shown = f"{value:8.2f}x" if "ratio" in label else f"{value:9.2f}"
        print(f"{label:46} {shown}  {note}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
