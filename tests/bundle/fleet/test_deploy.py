"""`llmcrate deploy` with real Ansible over real sshd to three hosts on this machine (issue 13).

One session-wide rollout drives the story, in order: the first deploy meets a host whose port
is taken (it fails, the others serve), the re-run installs that host only and finds the other
two up to date (nothing copied, nothing changed); then the hosts pull from each other's LAN registry,
``--check`` shows the upgrade without doing it, and ``--serial 1`` rolls version 2.0 out while a
client chats through HAProxy without one failed request."""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import pytest
import yaml

from bundle.fleet.conftest import Fleet, free_port
from bundler.balancer import balancer_config
from bundler.deploy import DeployResult, HostReport, deploy

pytestmark = pytest.mark.e2e


@dataclass
class Rollout:
    blocked: DeployResult    # h3's port taken by another program
    retried: DeployResult    # port free again: h3 installs, h1 and h2 are up to date
    staged_before: dict[str, float]
    staged_after: dict[str, float]


def _staged(fleet: Fleet) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for h in fleet.hosts for p in (h.state / "bundles").glob("*")}


def _inventory_variant(fleet: Fleet, name: str, change) -> Path:
    """A copy of the fleet's inventory with ``change(doc)`` applied."""
    doc = yaml.safe_load(fleet.inventory.read_text())
    change(doc)
    path = fleet.root / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def rollout(fleet: Fleet, built) -> Rollout:
    # a fourth host nobody answers for: reported unreachable, the others carry on
    with_dead = _inventory_variant(fleet, "inventory-dead.yml", lambda doc: doc["all"]["hosts"].update(
        {"dead": {"ansible_host": "127.0.0.1", "ansible_port": free_port()}}))
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", fleet.hosts[2].api_port))
    squatter.listen(1)
    try:
        blocked = deploy(built.tar, inventory=with_dead, env=fleet.env)
    finally:
        squatter.close()
    before = _staged(fleet)
    retried = deploy(built.tar, inventory=fleet.inventory, env=fleet.env)
    return Rollout(blocked=blocked, retried=retried, staged_before=before, staged_after=_staged(fleet))


def _by_host(result: DeployResult) -> dict[str, HostReport]:
    return {h.host: h for h in result.hosts}


def test_a_failed_host_is_named_and_the_others_serve(rollout: Rollout, fleet: Fleet) -> None:
    r = _by_host(rollout.blocked)
    assert [h.host for h in rollout.blocked.hosts] == ["h1", "h2", "h3", "dead"]
    assert r["dead"].result == "unreachable" and r["dead"].error
    assert r["h3"].result == "failed" and r["h3"].failed_task == "Run install.sh"
    assert "in use" in r["h3"].error, r["h3"].error  # the preflight's port check, in its words
    assert rollout.blocked.returncode != 0
    for name in ("h1", "h2"):
        rep = r[name]
        assert rep.result == "installed" and rep.copied and rep.bundle == "demo 1.0"
        assert rep.models == ["tiny:latest", "tinybot:latest"] and rep.runtime == "cpu"
        assert rep.seconds > 0
    for h in fleet.hosts[:2]:
        answer = ollama.Client(host=h.url).chat(model="tinybot", messages=[{"role": "user", "content": "hi"}],
                                                options={"num_predict": 4})
        assert answer.message.role == "assistant"


def test_the_rerun_installs_only_the_failed_host(rollout: Rollout) -> None:
    r = _by_host(rollout.retried)
    assert rollout.retried.ok
    assert r["h3"].result == "installed" and r["h3"].copied is False  # staged by the first run
    assert r["h1"].result == r["h2"].result == "up to date"
    assert not r["h1"].copied and not r["h2"].copied


def test_up_to_date_hosts_change_and_copy_nothing(rollout: Rollout, fleet: Fleet) -> None:
    for name in ("h1", "h2"):
        assert rollout.retried.recap[name]["changed"] == 0, rollout.retried.recap
        staged = {p: t for p, t in rollout.staged_after.items() if f"/{name}/" in p}
        assert staged and staged == {p: t for p, t in rollout.staged_before.items() if f"/{name}/" in p}
    assert rollout.retried.recap["h3"]["changed"] > 0


def test_pull_from_another_hosts_lan_registry(rollout: Rollout, fleet: Fleet) -> None:
    """h1 serves its store as a registry (llmcrate_environment: LLMCRATE_REGISTRY=1); h2 pulls."""
    import os
    import subprocess

    h1, h2 = fleet.hosts[0], fleet.hosts[1]
    name = f"127.0.0.1:{h1.api_port}/library/tiny:latest"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "LLMCRATE_"))}
    # h2's installed command talks to h2's server, which pulls into h2's store
    r = subprocess.run([str(h2.prefix / "bin" / "llmcrate"), "pull", "--insecure", name],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    tags = httpx.get(f"{h2.url}/api/tags").json()["models"]
    pulled = {m["name"]: m["digest"] for m in tags}
    original = {m["name"]: m["digest"] for m in httpx.get(f"{h1.url}/api/tags").json()["models"]}
    assert pulled[name] == original["tiny:latest"]
    # h2 does not serve a registry (off by default)
    assert httpx.get(f"{h2.url}/v2/").status_code == 404


def test_check_mode_shows_the_upgrade_and_changes_nothing(rollout: Rollout, fleet: Fleet, built_v2: Path) -> None:
    """Through the CLI as an operator runs it: one report line per host, nothing changed."""
    import subprocess
    import sys

    before = _staged(fleet)
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "deploy", str(built_v2), "-i", str(fleet.inventory),
                        "--check", "-q"], env=fleet.env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["HOST", "RESULT", "BUNDLE", "PREVIOUS", "RUNTIME", "MODELS", "COPIED", "TIME"]
    for line, h in zip(lines[1:], fleet.hosts):
        assert line.startswith(f"{h.name} ") and "would install" in line and "demo 2.0" in line
        assert " would " in line  # the bundle would be copied
    assert len(lines) == 4
    assert _staged(fleet) == before
    for h in fleet.hosts:
        assert json.loads((h.prefix / "lib" / "llmcrate" / "bundle.json").read_text())["version"] == "1.0"


def test_a_failed_batch_stops_the_rolling_upgrade(rollout: Rollout, fleet: Fleet, built_v2: Path) -> None:
    """--serial 1 and the first host lacks the disk space: the run stops there, the hosts not
    reached keep version 1.0, and nothing was copied anywhere."""
    def full_disk(doc: dict) -> None:
        doc["all"]["hosts"]["h1"]["llmcrate_space_margin"] = 10**18

    r = deploy(built_v2, inventory=_inventory_variant(fleet, "inventory-full.yml", full_disk),
               env=fleet.env, serial=1)
    hosts = _by_host(r)
    assert hosts["h1"].result == "failed" and hosts["h1"].failed_task == "Check free space"
    assert "not enough free space" in hosts["h1"].error and not hosts["h1"].copied
    assert hosts["h2"].result == hosts["h3"].result == "not reached"
    for h in fleet.hosts:
        assert json.loads((h.prefix / "lib" / "llmcrate" / "bundle.json").read_text())["version"] == "1.0"
        assert not (h.state / "bundles" / "demo-2.0.tar").exists()


def test_rolling_upgrade_under_load_through_haproxy(rollout: Rollout, fleet: Fleet, built_v2: Path,
                                                    haproxy, tmp_path: Path) -> None:
    port = free_port()
    cfg = balancer_config(fleet.inventory, bind=f"127.0.0.1:{port}")
    haproxy(cfg.replace("inter 2s", "inter 300ms"), port)
    pids = {h.name: (h.state / "llmcrate.pid").read_text() for h in fleet.hosts}
    stop = threading.Event()
    done: list[int] = []
    failures: list[str] = []

    def chat() -> None:
        client = ollama.Client(host=f"http://127.0.0.1:{port}", timeout=60)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if i % 2:
                    parts = list(client.chat(model="tinybot", messages=[{"role": "user", "content": "hi"}],
                                             options={"num_predict": 8}, stream=True))
                    assert parts[-1].done
                else:
                    client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                options={"num_predict": 8})
                done.append(1)
            except Exception as e:  # every failure is the test's finding
                failures.append(f"{type(e).__name__}: {e}")
            stop.wait(0.1)  # a steady client, not a CPU hog on a 2-core CI machine

    workers = [threading.Thread(target=chat)]
    for w in workers:
        w.start()
    try:
        time.sleep(1)
        result = deploy(built_v2, inventory=fleet.inventory, env=fleet.env, serial=1)
        time.sleep(1)
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    assert result.ok, [(h.host, h.failed_task, h.error) for h in result.hosts]
    assert {h.result for h in result.hosts} == {"installed"}
    assert all(h.previous == "1.0" and h.bundle == "demo 2.0" and h.copied for h in result.hosts)
    assert failures == [], (tmp_path / "haproxy.log").read_text()[-6000:]
    assert len(done) >= 10
    for h in fleet.hosts:
        assert (h.state / "llmcrate.pid").read_text() != pids[h.name]  # restarted on upgrade
        assert httpx.get(f"{h.url}/api/tags").status_code == 200
        staged = sorted(p.name for p in (h.state / "bundles").iterdir())
        assert staged == ["demo-2.0.sha256", "demo-2.0.tar"]  # the old bundle was cleaned up
