"""Fleet fixtures: three SSH "hosts" on this machine (each its own sshd on its own loopback port,
reached as root with a generated key, with its own prefix and server port), an inventory for
them, and a second version of the session's demo bundle.

The sshd daemons run with our own config (``-f``, ``UsePAM no``, keys only); they start in the
fixture and stop at teardown. Without root, sshd, ssh or ansible-playbook the tests skip."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bundle.conftest import Built
from bundler.pack import build_bundle
from bundler.spec import load_spec

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
HOSTS = ("h1", "h2", "h3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the fleet tests log in as root over SSH: run as root"
    if SSHD is None:
        return "sshd not installed (apt-get install openssh-server)"
    for tool in ("ssh", "ssh-keygen", "setsid"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not (Path(sys.executable).parent / "ansible-playbook").exists() and not shutil.which("ansible-playbook"):
        return "ansible-playbook not installed (pip install 'llmcrate[fleet]')"
    return None


@dataclass
class Host:
    name: str
    ssh_port: int
    prefix: Path
    api_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def state(self) -> Path:
        return self.prefix / "var" / "lib" / "llmcrate"


@dataclass
class Fleet:
    root: Path
    hosts: list[Host]
    inventory: Path
    env: dict[str, str]

    def stop_servers(self) -> None:
        for h in self.hosts:
            pidfile = h.state / "llmcrate.pid"
            if pidfile.exists():
                try:
                    os.kill(int(pidfile.read_text().strip()), 15)
                except (ValueError, ProcessLookupError):
                    pass


def _sshd_config(folder: Path, port: int, host_key: Path, authorized: Path) -> Path:
    cfg = folder / "sshd_config"
    cfg.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"PidFile {folder / 'sshd.pid'}", f"AuthorizedKeysFile {authorized}",
        "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no", "Subsystem sftp internal-sftp", "MaxStartups 50", "MaxSessions 50",
        "AcceptEnv LANG LC_*", "",
    ]))
    return cfg


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("fleet")
    key = root / "id_ed25519"
    host_key = root / "ssh_host_ed25519_key"
    for path in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    authorized = root / "authorized_keys"
    shutil.copy(key.with_suffix(".pub"), authorized)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    procs: list[subprocess.Popen[bytes]] = []
    hosts: list[Host] = []
    inv_hosts = {}
    try:
        for name in HOSTS:
            folder = root / name
            folder.mkdir()
            h = Host(name=name, ssh_port=free_port(), prefix=folder / "opt", api_port=free_port())
            cfg = _sshd_config(folder, h.ssh_port, host_key, authorized)
            procs.append(subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)],
                                          stdout=subprocess.DEVNULL, stderr=open(folder / "sshd.log", "wb")))
            hosts.append(h)
            inv_hosts[name] = {"ansible_host": "127.0.0.1", "ansible_port": h.ssh_port,
                               "llmcrate_prefix": str(h.prefix),
                               "llmcrate_host": f"127.0.0.1:{h.api_port}"}
        for h in hosts:
            wait_port(h.ssh_port)
        inventory = root / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"all": {
            "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(key),
                     "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                     "ansible_python_interpreter": "/usr/bin/python3",
                     "ansible_remote_tmp": str(root / "remote-tmp"),
                     "llmcrate_systemd": False, "llmcrate_runtime": "cpu",
                     # the first host also serves its store as a LAN registry
                     },
            "hosts": inv_hosts}}, sort_keys=False))
        inv = yaml.safe_load(inventory.read_text())
        inv["all"]["hosts"]["h1"]["llmcrate_environment"] = {"LLMCRATE_REGISTRY": "1"}
        inventory.write_text(yaml.safe_dump(inv, sort_keys=False))
        # Unix socket paths are short: keep Ansible's SSH control sockets out of deep tmp paths.
        cp_dir = tempfile.mkdtemp(prefix="llmcp-", dir="/tmp")
        env = {**os.environ, "ANSIBLE_SSH_CONTROL_PATH_DIR": cp_dir,
               "ANSIBLE_LOCAL_TEMP": str(root / "local-tmp"), "ANSIBLE_HOME": str(root / "ansible-home")}
        fl = Fleet(root=root, hosts=hosts, inventory=inventory, env=env)
        yield fl
        fl.stop_servers()
        shutil.rmtree(cp_dir, ignore_errors=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="session")
def built_v2(tmp_path_factory: pytest.TempPathFactory, built: Built) -> Path:
    """The session's demo bundle again as version 2.0 (same models; a new install to roll out)."""
    root = tmp_path_factory.mktemp("built-v2")
    spec = yaml.safe_load(built.spec.read_text())
    spec["version"] = "2.0"
    path = built.spec.parent / "demo-v2.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMCRATE_CACHE", str(built.tar.parent / "cache"))
        result = build_bundle(load_spec(path, env={}), store=built.store, out=root / "demo-2.0.tar")
    return result.paths[0]


HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[object]:
    """Factory: ``haproxy(config_text) -> port`` runs a real HAProxy (-db) until the test ends."""
    if HAPROXY is None:
        pytest.skip("haproxy not installed (apt-get install haproxy)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(text: str, port: int) -> int:
        cfg = tmp_path / f"haproxy{len(procs)}.cfg"
        cfg.write_text(text)
        check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        log = open(tmp_path / "haproxy.log", "ab")
        procs.append(subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=log, stderr=log))
        wait_port(port)
        return port

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)
