#!/usr/bin/env python3
"""Benchmark: ``llmcrate deploy`` to 1, 3 and 6 hosts, and requests/s through HAProxy (issue 13).

    sudo .venv/bin/python bench/bench_fleet.py [--hosts 1,3,6] [--seconds 10] [--clients 4]

Hosts are sshd daemons on loopback ports of this machine (root, a generated key, each its own
prefix and server port, ``llmcrate_systemd: false``), so "copy" is loopback SSH and all hosts
share this machine's disk and CPUs: the numbers show the playbook's own cost and how it
parallelises (Ansible forks = hosts), not a LAN. The bundle is the demo bundle
(examples/bundles/demo.yaml: two tiny models, this interpreter's wheels and llama.cpp build).
Each deploy goes to fresh prefixes, then runs again on the now up-to-date hosts.

Then the balancer: ``llmcrate serve`` processes over the tiny model and HAProxy with the config
``llmcrate deploy --balancer haproxy`` writes. ``--clients`` threads send non-streamed
``/api/chat`` requests (16 tokens) for ``--seconds``: straight to one server, through HAProxy to
that same single server (the proxy's overhead), and through HAProxy to three servers. Prints a
markdown block for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from make_tiny_model import write_tiny_gguf  # noqa: E402

from bundler.balancer import Backend, render_haproxy  # noqa: E402
from bundler.deploy import deploy  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing on port {port}")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "LLMCRATE_"))}


def build_bundle(work: Path) -> Path:
    spec_dir = work / "spec"
    shutil.copytree(ROOT / "examples" / "bundles", spec_dir)
    write_tiny_gguf(spec_dir / "tiny.gguf")
    (work / "out").mkdir()
    env = {**clean_env(), "OLLAMA_MODELS": str(work / "store"), "LLMCRATE_CACHE": str(work / "cache")}
    subprocess.run([sys.executable, "-m", "runtime.cli", "bundle", "build", str(spec_dir / "demo.yaml"),
                    "-o", str(work / "out")], env=env, check=True, capture_output=True, cwd=ROOT)
    return next((work / "out").glob("*.tar"))


def start_sshd(work: Path, n: int) -> tuple[list[int], Path, list[subprocess.Popen[bytes]]]:
    key, host_key = work / "id_ed25519", work / "host_key"
    for p in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(p)], check=True)
    shutil.copy(key.with_suffix(".pub"), work / "authorized_keys")
    Path("/run/sshd").mkdir(exist_ok=True)
    ports, procs = [], []
    for i in range(n):
        port = free_port()
        cfg = work / f"sshd{i}.conf"
        cfg.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {work}/sshd{i}.pid\n"
                       f"AuthorizedKeysFile {work}/authorized_keys\nPermitRootLogin prohibit-password\n"
                       "PasswordAuthentication no\nUsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n"
                       "MaxStartups 100\nMaxSessions 100\n")
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        procs.append(subprocess.Popen([sshd, "-D", "-f", str(cfg)], stderr=subprocess.DEVNULL))
        ports.append(port)
    for p in ports:
        wait_port(p)
    return ports, key, procs


def bench_deploy(work: Path, bundle: Path, ssh_ports: list[int], key: Path, n: int) -> tuple[float, float, float]:
    base = work / f"deploy{n}"
    hosts = {f"h{i}": {"ansible_host": "127.0.0.1", "ansible_port": ssh_ports[i],
                       "llmcrate_prefix": str(base / f"h{i}"), "llmcrate_host": f"127.0.0.1:{free_port()}"}
             for i in range(n)}
    inv = base / "inventory.yml"
    base.mkdir()
    inv.write_text(yaml.safe_dump({"all": {"vars": {
        "ansible_user": "root", "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3", "ansible_remote_tmp": str(base / "rtmp"),
        "llmcrate_systemd": False, "llmcrate_runtime": "cpu"}, "hosts": hosts}}))
    env = {**clean_env(), "ANSIBLE_SSH_CONTROL_PATH_DIR": tempfile.mkdtemp(prefix="cp", dir="/tmp"),
           "ANSIBLE_HOME": str(base / "ah")}
    first = deploy(bundle, inventory=inv, forks=n, env=env)
    assert first.ok, [(h.host, h.error) for h in first.hosts]
    again = deploy(bundle, inventory=inv, forks=n, env=env)
    assert again.ok and not any(h.copied for h in again.hosts)
    per_host = sorted(h.seconds for h in first.hosts)[len(first.hosts) // 2]
    for i in range(n):  # stop this round's servers
        pid = (base / f"h{i}" / "var" / "lib" / "llmcrate" / "llmcrate.pid").read_text().strip()
        subprocess.run(["kill", pid], check=False)
    return first.seconds, per_host, again.seconds


def rate(url: str, seconds: float, clients: int) -> float:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "options": {"num_predict": 16, "temperature": 0}}
    count = [0] * clients
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.monotonic() < stop:
                c.post("/api/chat", json=body).raise_for_status()
                count[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(count) / seconds


def bench_balancer(work: Path, seconds: float, clients: int) -> dict[str, float]:
    from runtime.models.create import CreateRequest, create_from_request
    from runtime.models.store import Store

    store = Store(work / "bal-models")
    gguf = write_tiny_gguf(work / "bal.gguf")
    blob = store.add_blob_file(gguf)
    create_from_request(store, "tiny:latest", CreateRequest(
        files={gguf.name: blob.digest}, template="{{ .Prompt }}", parameters={"stop": ["\n"]}))
    servers, procs = [], []
    try:
        for _ in range(3):
            port = free_port()
            procs.append(subprocess.Popen([sys.executable, "-m", "runtime.cli", "serve"], cwd=ROOT,
                                          env={**clean_env(), "OLLAMA_HOST": f"127.0.0.1:{port}",
                                               "OLLAMA_MODELS": str(store.root), "OLLAMA_NUM_PARALLEL": "4"},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            servers.append(port)
        for p in servers:
            wait_port(p)
        out = {}
        for label, backends in (("haproxy-1", servers[:1]), ("haproxy-3", servers)):
            hp = free_port()
            cfg = work / f"{label}.cfg"
            cfg.write_text(render_haproxy([Backend(f"b{i}", "127.0.0.1", p) for i, p in enumerate(backends)],
                                          bind=f"127.0.0.1:{hp}").replace("log stdout format raw local0", ""))
            proxy = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            try:
                wait_port(hp)
                time.sleep(1)
                for p in backends:  # load the model everywhere before timing
                    httpx.post(f"http://127.0.0.1:{p}/api/chat", timeout=60, json={
                        "model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False})
                if label == "haproxy-1":
                    # direct and proxied alternate, best of three each, so load drift hits both
                    direct, proxied = [], []
                    for _ in range(3):
                        direct.append(rate(f"http://127.0.0.1:{servers[0]}", seconds, clients))
                        proxied.append(rate(f"http://127.0.0.1:{hp}", seconds, clients))
                    out["direct"], out["haproxy-1"] = max(direct), max(proxied)
                else:
                    out[label] = max(rate(f"http://127.0.0.1:{hp}", seconds, clients) for _ in range(3))
            finally:
                proxy.terminate()
                proxy.wait()
        return out
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", default="1,3,6")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("haproxy"):
        print("needs root (sshd logins as root) and haproxy", file=sys.stderr)
        return 1
    counts = [int(x) for x in args.hosts.split(",")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-fleet-"))
    bundle = build_bundle(work)
    ssh_ports, key, sshds = start_sshd(work, max(counts))
    rows = []
    try:
        for n in counts:
            rows.append((n, *bench_deploy(work, bundle, ssh_ports, key, n)))
    finally:
        for p in sshds:
            p.terminate()
    rates = bench_balancer(work, args.seconds, args.clients)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, {now}")
    print(f"bundle: {bundle.name} {bundle.stat().st_size / 1e6:.1f} MB; load average before: "
          f"{os.getloadavg()[0]:.2f}")
    print("hosts  deploy (fresh)  median host  re-run (up to date)")
    for n, total, per_host, again in rows:
        print(f"{n:>5}  {total:>12.1f} s  {per_host:>9.1f} s  {again:>17.1f} s")
    print(f"requests/s ({args.clients} clients, 16-token non-streamed chats, best of 3 x {args.seconds:.0f} s):")
    d = rates["direct"]
    for label in ("direct", "haproxy-1", "haproxy-3"):
        print(f"  {label:<10} {rates[label]:8.1f} req/s  ({(rates[label] / d - 1) * 100:+.1f} % vs direct)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
