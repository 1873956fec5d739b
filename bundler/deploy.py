"""``llmcrate deploy``: one bundle to many hosts with Ansible (issue 13).

llmcrate does not talk SSH itself: it writes the playbook that ships in :mod:`bundler.fleet`
(a role plus ``site.yml``) to a temporary folder, computes the bundle's variables (files,
sha256, size, top folder, models) and runs ``ansible-playbook`` from ansible-core (the
``fleet`` extra). Each host writes its report as JSON into a folder on the controller; hosts
that wrote none were unreachable or not reached (a rolling upgrade stopped before them).

    bundle_facts(path)          -> BundleFacts (volumes joined, sha256 over the whole tar)
    emit_playbook(dest, facts)  -> the files ``--emit`` writes (+ bundle-vars.yml)
    deploy(bundle, inventory=…) -> DeployResult (one HostReport per host of the play)
    inventory_hosts(inventory)  -> hosts with their variables (ansible-inventory), for the balancer
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml

from runtime.bundle.archive import ConcatReader, read_bundle_json, volumes_of
from runtime.errors import BundleError, DeployError
from runtime.fileio import sha256_stream
from runtime.models.names import parse_name

logger = logging.getLogger(__name__)

#: files of bundler.fleet that make up the playbook (the rest is Python or the balancer template)
PLAYBOOK_FILES = (
    "site.yml",
    "roles/llmcrate/defaults/main.yml",
    "roles/llmcrate/tasks/main.yml",
    "roles/llmcrate/tasks/service.yml",
    "roles/llmcrate/files/probe.py",
)
VARS_FILE = "bundle-vars.yml"
_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)\s+"
                    r"skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)")
_SERIAL = re.compile(r"^(\d+%?)$")


@dataclass(frozen=True)
class BundleFacts:
    """What the playbook needs to know about the bundle it deploys."""

    files: tuple[Path, ...]   # the tar, or its split volumes in order
    sha256: str               # of the whole tar (the volumes laid end to end)
    size: int
    name: str
    version: str
    top: str                  # the folder the tar unpacks into
    models: tuple[str, ...]   # as /api/tags names them

    def playbook_vars(self) -> dict[str, Any]:
        return {
            "llmcrate_bundle_files": [str(p) for p in self.files],
            "llmcrate_bundle_sha256": self.sha256,
            "llmcrate_bundle_size": self.size,
            "llmcrate_bundle_name": self.name,
            "llmcrate_bundle_version": self.version,
            "llmcrate_bundle_top": self.top,
            "llmcrate_bundle_models": list(self.models),
        }


@dataclass
class HostReport:
    """One host's outcome, as the role wrote it (or ``unreachable`` / ``not reached``)."""

    host: str
    result: str                # installed | up to date | would install | failed | unreachable | not reached
    bundle: str = ""
    previous: str = ""
    runtime: str = ""
    models: list[str] = field(default_factory=list)
    copied: bool = False
    would_copy: bool = False
    url: str = ""
    seconds: float = 0.0
    failed_task: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.result in ("installed", "up to date", "would install")

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HostReport:
        return cls(host=str(doc.get("host", "")), result=str(doc.get("result", "")).strip(),
                   bundle=str(doc.get("bundle", "")), previous=str(doc.get("previous", "")),
                   runtime=str(doc.get("runtime", "")),
                   models=[str(m) for m in doc.get("models") or []],
                   copied=_truthy(doc.get("copied")), would_copy=_truthy(doc.get("would_copy")),
                   url=str(doc.get("url", "")), seconds=float(doc.get("seconds") or 0),
                   failed_task=str(doc.get("failed_task", "")), error=str(doc.get("error", "")))


@dataclass
class DeployResult:
    hosts: list[HostReport]
    returncode: int
    recap: dict[str, dict[str, int]]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.hosts) and all(h.ok for h in self.hosts)

    @property
    def changed(self) -> int:
        """Changed tasks over all hosts (0 on an up-to-date fleet)."""
        return sum(r.get("changed", 0) for r in self.recap.values())


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return bool(value)


# ---- the bundle --------------------------------------------------------------------------------
def bundle_facts(path: Path) -> BundleFacts:
    """Read a bundle tar (or any of its split volumes) and hash it whole.

    Raises BundleError when it is no readable bundle or is compressed (hosts unpack it with
    plain ``tar -x``; deploy ``.tar`` bundles).
    """
    path = Path(path)
    files = volumes_of(path) if not path.is_file() or re.search(r"\.\d{3}$", path.name) else [path]
    if not files:
        raise BundleError(f"{path}: no such bundle (nor split volumes {path.name}.000, …)")
    meta = read_bundle_json(files[0] if len(files) == 1 else path)
    if any(p.name.endswith((".gz", ".zst")) for p in files):
        raise BundleError(f"{path.name}: deploy takes uncompressed .tar bundles "
                          "(build with --compress none, the default)")
    with io.BufferedReader(ConcatReader(files)) as whole:  # the volumes end to end, as a host joins them
        got = sha256_stream(whole)
    models = tuple(sorted(parse_name(name).display for name in meta.models))
    return BundleFacts(files=tuple(p.resolve() for p in files), sha256=got.hex, size=got.size,
                       name=meta.name, version=meta.version, top=meta.top, models=models)


# ---- the playbook ------------------------------------------------------------------------------
def emit_playbook(dest: Path, *, facts: BundleFacts | None = None) -> list[Path]:
    """Write the site playbook and role into ``dest`` (and ``bundle-vars.yml`` for ``facts``).

    Args:
        dest: folder to write into (created; existing files of the same name are replaced).
        facts: the bundle to deploy, whose variables go to ``bundle-vars.yml``.
    """
    root = resources.files("bundler.fleet")
    written = []
    for rel in PLAYBOOK_FILES:
        out = Path(dest) / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(root.joinpath(rel).read_bytes())
        written.append(out)
    if facts is not None:
        out = Path(dest) / VARS_FILE
        out.write_text("# Variables of the bundle to deploy (llmcrate deploy --emit)\n"
                       + yaml.safe_dump(facts.playbook_vars(), sort_keys=False))
        written.append(out)
    return written


def ansible_tool(name: str) -> str:
    """Path of an ansible-core program: next to this Python first (the fleet extra), then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise DeployError(f"{name} not found: llmcrate deploy runs Ansible",
                      hint="pip install 'llmcrate[fleet]' (ansible-core)")


def _check_inventory(inventory: Path) -> None:
    if not Path(inventory).exists():
        raise DeployError(f"inventory {inventory} not found")


def check_serial(serial: str | int | None) -> str | None:
    """``--serial``: a count or a percentage of the hosts ("1", "2", "25%")."""
    if serial is None:
        return None
    text = str(serial).strip()
    if not _SERIAL.match(text) or text in ("0", "0%"):
        raise DeployError(f'--serial must be a count or a percentage like 1 or 25%, not "{serial}"')
    return text


# ---- running it --------------------------------------------------------------------------------
def deploy(bundle: Path, *, inventory: Path, serial: str | int | None = None,
           max_fail_percentage: int | None = None, check: bool = False, forks: int | None = None,
           limit: str | None = None, on_line: Callable[[str], None] | None = None,
           env: Mapping[str, str] | None = None) -> DeployResult:
    """Deploy ``bundle`` to every host of ``inventory`` and return one report per host.

    Args:
        bundle: the bundle tar, or any of its split volumes.
        inventory: an Ansible inventory (INI, YAML or a folder) with the hosts and their
            ``llmcrate_*`` variables.
        serial: rolling upgrade batch size (count or percentage); default all at once.
        max_fail_percentage: stop once more than this share of a batch failed (Ansible's
            meaning); a batch whose hosts all fail always stops the play.
        check: Ansible check mode: report what would change, change nothing.
        forks: parallel hosts (Ansible's --forks; its default is 5).
        limit: an Ansible host pattern to deploy to only some hosts.
        on_line: called with each line of Ansible's output (progress for the CLI).
        env: environment for ansible-playbook (default os.environ).
    """
    import time

    _check_inventory(inventory)
    serial_text = check_serial(serial)
    if max_fail_percentage is not None and not 0 <= max_fail_percentage <= 100:
        raise DeployError("--max-fail-percentage must be between 0 and 100")
    playbook = ansible_tool("ansible-playbook")
    facts = bundle_facts(bundle)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llmcrate-deploy-") as tmp:
        work = Path(tmp)
        emit_playbook(work)
        reports = work / "reports"
        reports.mkdir()
        extra: dict[str, Any] = {**facts.playbook_vars(), "llmcrate_report_dir": str(reports)}
        if serial_text:
            extra["llmcrate_serial"] = serial_text
        if max_fail_percentage is not None:
            extra["llmcrate_max_fail_percentage"] = max_fail_percentage
        (work / "vars.json").write_text(json.dumps(extra))
        base = [playbook, "-i", str(Path(inventory).resolve()), str(work / "site.yml"),
                "-e", f"@{work / 'vars.json'}"]
        if limit:
            base += ["--limit", limit]
        run_env = {**(os.environ if env is None else env), "ANSIBLE_RETRY_FILES_ENABLED": "False",
                   "ANSIBLE_NOCOLOR": "1"}
        # One SSH round trip per task instead of three (copy the module, run it, clean up); the
        # operator's own setting wins.
        run_env.setdefault("ANSIBLE_PIPELINING", "True")
        hosts = _inventory_order(_play_hosts(base, run_env), inventory)
        cmd = base + (["--check"] if check else []) + (["--forks", str(forks)] if forks else [])
        logger.info("running %s", " ".join(cmd))
        lines: list[str] = []
        proc = subprocess.Popen(cmd, cwd=work, env=run_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if on_line:
                on_line(line)
        rc = proc.wait()
        recap = parse_recap(lines)
        found = {p.stem: HostReport.from_json(json.loads(p.read_text()))
                 for p in reports.glob("*.json")}
    if not hosts and rc != 0:
        tail = " | ".join(ln.strip() for ln in lines[-5:] if ln.strip())
        raise DeployError(f"ansible-playbook failed (exit {rc}): {tail}")
    out = []
    for host in hosts:
        if host in found:
            out.append(found[host])
        elif recap.get(host, {}).get("unreachable"):
            out.append(HostReport(host=host, result="unreachable", bundle=f"{facts.name} {facts.version}",
                                  error=_unreachable_reason(lines, host)))
        else:
            out.append(HostReport(host=host, result="not reached", bundle=f"{facts.name} {facts.version}",
                                  error="the play stopped before this host (failure threshold)"))
    return DeployResult(hosts=out, returncode=rc, recap=recap,
                        seconds=round(time.monotonic() - started, 1))


def _play_hosts(base: list[str], env: Mapping[str, str]) -> list[str]:
    """The hosts the play targets, in inventory order (``ansible-playbook --list-hosts``)."""
    r = subprocess.run([*base, "--list-hosts"], env=dict(env), capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        msg = " ".join((r.stderr or r.stdout).split())[-400:]
        raise DeployError(f"ansible-playbook cannot read the inventory or playbook: {msg}")
    hosts: list[str] = []
    lines = r.stdout.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\s+hosts \((\d+)\):\s*$", line)
        if m:
            hosts += [ln.strip() for ln in lines[i + 1:i + 1 + int(m.group(1))]]
    return hosts


def _inventory_order(hosts: list[str], inventory: Path) -> list[str]:
    try:
        order = {h.name: i for i, h in enumerate(inventory_hosts(inventory))}
    except DeployError:
        return hosts
    return sorted(hosts, key=lambda h: order.get(h, len(order)))


def parse_recap(lines: list[str]) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters per host."""
    out: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in lines:
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        m = _RECAP.match(line) if in_recap else None
        if m:
            out[m.group("host")] = {k: int(v) for k, v in m.groupdict().items() if k != "host"}
    return out


def _unreachable_reason(lines: list[str], host: str) -> str:
    for line in lines:
        if line.startswith(f"fatal: [{host}]: UNREACHABLE!"):
            m = re.search(r'"msg":\s*"([^"]*)"', line)
            return m.group(1) if m else "unreachable"
    return "unreachable"


# ---- the inventory, for the balancer -----------------------------------------------------------
@dataclass(frozen=True)
class InventoryHost:
    name: str
    vars: dict[str, Any]


def inventory_hosts(inventory: Path, *, limit: str | None = None) -> list[InventoryHost]:
    """Every host of ``inventory`` with its variables, in inventory order (ansible-inventory)."""
    _check_inventory(inventory)
    cmd = [ansible_tool("ansible-inventory"), "-i", str(inventory), "--list"]
    if limit:
        cmd += ["--limit", limit]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False,
                       env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    if r.returncode != 0:
        raise DeployError(f"ansible-inventory cannot read {inventory}: "
                          + " ".join(r.stderr.split())[-400:])
    try:
        doc = json.loads(r.stdout)
    except ValueError as e:
        raise DeployError(f"ansible-inventory printed no JSON for {inventory}") from e
    hostvars = doc.get("_meta", {}).get("hostvars", {})
    names: list[str] = []

    def walk(group: str) -> None:
        g = doc.get(group, {})
        for h in g.get("hosts", []):
            if h not in names:
                names.append(h)
        for child in g.get("children", []):
            walk(child)

    walk("all")
    return [InventoryHost(name=h, vars=dict(hostvars.get(h, {}))) for h in names]


__all__ = ["BundleFacts", "DeployResult", "HostReport", "InventoryHost", "bundle_facts",
           "check_serial", "deploy", "emit_playbook", "inventory_hosts", "parse_recap"]
