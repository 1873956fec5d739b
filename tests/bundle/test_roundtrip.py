"""The whole trip: build the demo bundle online, then with no network at all (``unshare -n``, only
lo up) install it, upgrade it in place, start it, chat through the ``ollama`` client, uninstall.
Plus install.sh's refusals and its rollback when a step fails midway."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.bundle.verify import verify_bundle
from tests.bundle.conftest import BOT_SYSTEM, Built

pytestmark = pytest.mark.e2e

CHAT = r'''
import json, socket, sys, time
import ollama
host, registry = sys.argv[1], sys.argv[2]
h, p = registry.rsplit(":", 1)
try:  # the build host's registry must be unreachable from here
    socket.create_connection((h, int(p)), timeout=1).close()
    registry_reachable = True
except OSError:
    registry_reachable = False
client = ollama.Client(host="http://" + host)
for _ in range(120):
    try:
        client.ps()
        break
    except Exception:
        time.sleep(0.5)
names = sorted(m.model for m in client.list().models)
reply = client.chat(model="tinybot", messages=[{"role": "user", "content": "Say hi"}],
                    options={"num_predict": 8, "seed": 1})
show = client.show("tinybot")
print(json.dumps({"names": names, "content": reply.message.content, "done": reply.done,
                  "eval_count": reply.eval_count, "modelfile": show.modelfile,
                  "registry_reachable": registry_reachable}))
'''

DRIVER = r'''
set -eu
ip link set lo up
cd "$BUNDLE"
./install.sh --prefix "$PREFIX" --no-systemd --yes --host "127.0.0.1:$PORT" > "$OUT/install1.log" 2>&1
./install.sh --prefix "$PREFIX" --no-systemd --yes --host "127.0.0.1:$PORT" > "$OUT/install2.log" 2>&1
"$PREFIX/lib/llmcrate/start.sh" > "$OUT/serve.log" 2>&1 &
server=$!
status=0
"$CLIENT_PY" "$OUT/chat.py" "127.0.0.1:$PORT" "$REGISTRY" > "$OUT/chat.json" 2> "$OUT/chat.err" || status=$?
"$PREFIX/bin/llmcrate" list > "$OUT/list.txt" 2>&1 || true
kill "$server"
wait "$server" || true
"$PREFIX/lib/llmcrate/uninstall.sh" --yes > "$OUT/uninstall.log" 2>&1
exit "$status"
'''


def _netns_prefix() -> list[str]:
    for cmd in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which("unshare") and subprocess.run([*cmd, "true"], capture_output=True).returncode == 0:
            return cmd
    pytest.skip("cannot create a network namespace here (unshare -n / -rn)")


def _extract(built: Built, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-xf", str(built.tar), "-C", str(dest)], check=True)
    return dest / "demo-1.0"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "LLMCRATE_", "PYTHON"))}
    # the host's own python3, never the test venv's: the install must not lean on its packages
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def _logs(out: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(out.glob("*"))
                     if p.suffix in (".log", ".err", ".txt"))


def test_offline_round_trip(built: Built, tmp_path: Path) -> None:
    netns = _netns_prefix()
    bundle = _extract(built, tmp_path / "media")
    prefix, out = tmp_path / "opt", tmp_path / "out"
    out.mkdir()
    (out / "chat.py").write_text(CHAT)
    (out / "driver.sh").write_text(DRIVER)
    env = {**_env(), "BUNDLE": str(bundle), "PREFIX": str(prefix), "OUT": str(out), "PORT": "18431",
           "CLIENT_PY": sys.executable, "REGISTRY": built.registry_name.split("/")[0]}
    r = subprocess.run([*netns, "sh", str(out / "driver.sh")], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr + _logs(out)
    chat = json.loads((out / "chat.json").read_text())
    assert chat["registry_reachable"] is False  # really offline
    assert chat["names"] == ["tiny:latest", "tinybot:latest"]
    assert chat["done"] and chat["eval_count"] >= 1 and chat["content"]
    assert BOT_SYSTEM in chat["modelfile"]
    install1 = (out / "install1.log").read_text()
    assert "[ok  ] python3" in install1 and "2 model(s) verified" in install1 and "start.sh" in install1
    assert "model registry.ollama.ai/library/tinybot/latest" in install1
    assert "2 model(s) verified" in (out / "install2.log").read_text()  # re-run: blobs found in the store
    assert "serving with the cpu runtime" in (out / "serve.log").read_text()
    # uninstall removed the program, kept the models
    assert not (prefix / "lib" / "llmcrate").exists() and not (prefix / "bin" / "llmcrate").exists()
    models = prefix / "var/lib/llmcrate/models"
    assert (models / "manifests/registry.ollama.ai/library/tinybot/latest").is_file()
    assert "models kept" in (out / "uninstall.log").read_text()


def _install(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(bundle / "install.sh"), *args], env=_env(), capture_output=True,
                          text=True, timeout=300)


def test_failure_midway_rolls_back(built: Built, tmp_path: Path) -> None:
    bundle = _extract(built, tmp_path / "media")
    prefix = tmp_path / "opt"
    first = _install(bundle, "--prefix", str(prefix), "--no-systemd", "--yes", "--host", "127.0.0.1:18432")
    assert first.returncode == 0, first.stdout + first.stderr
    conf = (prefix / "lib/llmcrate/install.conf").read_text()
    env_file = (prefix / "etc/llmcrate/llmcrate.env").read_text()
    # a newer bundle whose second model cannot be registered: a file sits where its folder must go
    bundle2 = _extract(built, tmp_path / "media2")
    models = prefix / "var/lib/llmcrate/models"
    shutil.rmtree(models / "manifests/registry.ollama.ai/library/tinybot")
    (models / "manifests/registry.ollama.ai/library/tinybot").write_text("in the way")
    before = sorted(p.name for p in (models / "blobs").iterdir())
    second = _install(bundle2, "--prefix", str(prefix), "--no-systemd", "--yes", "--host", "127.0.0.1:18433")
    assert second.returncode != 0
    assert "rolling back" in second.stdout + second.stderr
    assert (prefix / "lib/llmcrate/install.conf").read_text() == conf      # old program back
    assert (prefix / "etc/llmcrate/llmcrate.env").read_text() == env_file  # old settings back
    assert sorted(p.name for p in (models / "blobs").iterdir()) == before
    assert not list((prefix / "lib").glob(".llmcrate*"))                    # no leftovers
    verify_bundle(bundle2)                                                  # nothing taken from it


def test_install_refusals(built: Built, tmp_path: Path) -> None:
    bundle = _extract(built, tmp_path / "media")
    prefix = tmp_path / "opt"
    meta_path = bundle / "bundle.json"
    meta = json.loads(meta_path.read_text())
    # wrong architecture: refused in preflight, nothing written
    meta_path.write_text(json.dumps({**meta, "arch": "aarch64"}))
    r = _install(bundle, "--prefix", str(prefix), "--yes", "--no-systemd")
    assert r.returncode != 0 and "bundle is for aarch64" in r.stdout and "nothing was changed" in r.stderr
    assert not prefix.exists()
    meta_path.write_text(json.dumps(meta))
    # tampered file
    start = (bundle / "start.sh").read_bytes()
    (bundle / "start.sh").write_bytes(start.replace(b"exec ", b"eval ", 1))  # same size, other bytes
    r = _install(bundle, "--prefix", str(prefix), "--yes", "--no-systemd")
    assert r.returncode != 0 and "digest mismatch for start.sh" in r.stderr
    assert not prefix.exists()
    # port in use
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _install(_extract(built, tmp_path / "m2"), "--prefix", str(prefix), "--yes", "--no-systemd",
                     "--host", f"127.0.0.1:{port}", "--dry-run")
    assert r.returncode != 0 and "is in use" in r.stdout
    # no python3 at all
    tools = tmp_path / "no-python"
    tools.mkdir()
    for tool in ("dirname", "id", "cat"):
        (tools / tool).symlink_to(shutil.which(tool))  # type: ignore[arg-type]
    r = subprocess.run(["/bin/sh", str(bundle / "install.sh"), "--dry-run"], env={"PATH": str(tools)},
                       capture_output=True, text=True)
    assert r.returncode != 0 and "python3 not found" in r.stderr
    # bad flag
    r = _install(bundle, "--prefx", "/x")
    assert r.returncode != 0 and "unknown option '--prefx'" in r.stderr


FAKE_SYSTEMCTL = r'''#!/bin/sh
# systemctl stand-in: records calls; "restart" runs the unit's ExecStart with its EnvironmentFile
echo "systemctl $*" >> "$FAKE_DIR/calls"
case "$1" in
    restart)
        unit="$LLMCRATE_UNIT_DIR/$2"
        cmd=$(sed -n 's/^ExecStart=//p' "$unit")
        envf=$(sed -n 's/^EnvironmentFile=//p' "$unit")
        if [ -f "$FAKE_DIR/pid" ]; then kill "$(cat "$FAKE_DIR/pid")" 2>/dev/null || true; sleep 1; fi
        (set -a; . "$envf"; set +a; INVOCATION_ID=fake; export INVOCATION_ID; exec "$cmd") \
            > "$FAKE_DIR/service.log" 2>&1 &
        echo $! > "$FAKE_DIR/pid" ;;
    disable)
        if [ -f "$FAKE_DIR/pid" ]; then kill "$(cat "$FAKE_DIR/pid")" 2>/dev/null || true; rm -f "$FAKE_DIR/pid"; fi ;;
esac
exit 0
'''


def test_systemd_install_with_smoke_test(built: Built, tmp_path: Path) -> None:
    """The systemd branch: user, unit, enable, restart, smoke test (real server), uninstall --purge.
    systemctl/useradd/... are stand-ins on PATH (no systemd in a test container); the service
    itself is real: the fake systemctl runs the installed unit's ExecStart."""
    bundle = _extract(built, tmp_path / "media")
    prefix, fake, units = tmp_path / "opt", tmp_path / "fake", tmp_path / "units"
    fake.mkdir()
    units.mkdir()
    (fake / "systemctl").write_text(FAKE_SYSTEMCTL)
    for tool, body in {"useradd": "", "usermod": "", "chown": "", "journalctl": "",
                       "getent": "exit 2\n"}.items():
        (fake / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "$FAKE_DIR/calls"\n{body}')
    for p in fake.iterdir():
        p.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**_env(), "FAKE_DIR": str(fake), "LLMCRATE_UNIT_DIR": str(units)}
    env["PATH"] = f"{fake}:{env['PATH']}"
    try:
        r = subprocess.run(["sh", str(bundle / "install.sh"), "--prefix", str(prefix), "--systemd", "--yes",
                            "--host", f"127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=300)
        service_log = (fake / "service.log").read_text() if (fake / "service.log").exists() else ""
        assert r.returncode == 0, r.stdout + r.stderr + service_log
        assert "server 0.1.0 answered" in r.stdout
        calls = (fake / "calls").read_text()
        assert "useradd --system --user-group" in calls and "chown -R llmcrate:llmcrate" in calls
        assert "systemctl enable llmcrate.service" in calls and "systemctl restart llmcrate.service" in calls
        unit = (units / "llmcrate.service").read_text()
        assert f"ExecStart={prefix}/lib/llmcrate/start.sh" in unit and "@" not in unit
        r = subprocess.run(["sh", str(prefix / "lib/llmcrate/uninstall.sh"), "--purge", "--yes"], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "systemctl disable --now llmcrate.service" in (fake / "calls").read_text()
        assert not (units / "llmcrate.service").exists() and not (prefix / "var/lib/llmcrate/models").exists()
        assert not (fake / "pid").exists()
    finally:
        if (fake / "pid").exists():
            os.kill(int((fake / "pid").read_text()), 15)


def test_no_space_is_refused_before_anything_is_written(built: Built, tmp_path: Path) -> None:
    """A 2 MB filesystem as the prefix (private mount namespace): preflight refuses, nothing written."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a mount namespace here (unshare -m)")
    bundle = _extract(built, tmp_path / "media")
    small = tmp_path / "small"
    small.mkdir()
    script = (f'mount -t tmpfs -o size=2m tmpfs {small} && sh {bundle}/install.sh --prefix {small}/opt '
              f'--no-systemd --yes; status=$?; ls -A {small}; exit $status')
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], env=_env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    assert "[FAIL] disk (prefix)" in r.stdout and "nothing was changed" in r.stderr
    # `ls -A` of the tmpfs ran last and printed nothing: the report is the end, no prefix was created
    assert r.stdout.splitlines()[-1].startswith("  [")


def test_upgrade_keeps_previous_choices_and_saves_edited_settings(built: Built, tmp_path: Path) -> None:
    bundle = _extract(built, tmp_path / "media")
    prefix, models = tmp_path / "opt", tmp_path / "store"
    r = _install(bundle, "--prefix", str(prefix), "--models-dir", str(models), "--host", "127.0.0.1:18441",
                 "--runtime", "cpu", "--no-systemd", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    env_file = prefix / "etc/llmcrate/llmcrate.env"
    env_file.write_text(env_file.read_text() + "OLLAMA_DEBUG=1\n")  # an operator's edit
    r = _install(_extract(built, tmp_path / "media2"), "--prefix", str(prefix), "--no-systemd", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert list((prefix / "lib/llmcrate/python/runtime").rglob("*.pyc"))  # compiled at install
    conf = (prefix / "lib/llmcrate/install.conf").read_text()
    assert f"MODELS_DIR={models}\n" in conf and "HOST=127.0.0.1:18441\n" in conf and "RUNTIME=cpu\n" in conf
    text = env_file.read_text()
    assert "OLLAMA_HOST=127.0.0.1:18441" in text and f"OLLAMA_MODELS={models}" in text
    assert "LLMCRATE_RUNTIME=cpu" in text and "OLLAMA_DEBUG" not in text
    assert "OLLAMA_DEBUG=1" in (env_file.parent / "llmcrate.env.bak").read_text()
    assert "llmcrate.env.bak" in r.stdout
    assert (models / "manifests/registry.ollama.ai/library/tinybot/latest").is_file()
