"""install.sh killed (SIGKILL) at each step of an upgrade: the previous version is restored by the
next run (or keeps running), and a completed run leaves no leftovers (issue 10)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.bundle.conftest import Built
from tests.bundle.test_roundtrip import _env, _extract

TINYBOT = "manifests/registry.ollama.ai/library/tinybot/latest"


def _install(bundle: Path, prefix: Path, port: int, kill_at: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    env = _env()
    if kill_at:
        env["LLMCRATE_TEST_KILL_AT"] = kill_at
    return subprocess.run(["sh", str(bundle / "install.sh"), "--prefix", str(prefix), "--no-systemd",
                           "--yes", "--host", f"127.0.0.1:{port}"],
                          env=env, capture_output=True, text=True, timeout=300)


def _recover(bundle: Path, prefix: Path) -> str:
    """What install.sh runs first: ``runtime.bundle recover`` from the bundle's own wheel."""
    wheel = next((bundle / "wheels").glob("llmcrate-*.whl"))
    r = subprocess.run([shutil.which("python3") or "python3", "-s", "-m", "runtime.bundle", "recover",
                        "--lib", str(prefix / "lib/llmcrate"),
                        "--models-dir", str(prefix / "var/lib/llmcrate/models")],
                       env={**_env(), "PYTHONPATH": str(wheel)}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _leftovers(prefix: Path) -> list[str]:
    found = [p.name for p in (prefix / "lib").iterdir() if p.name.startswith(".llmcrate")]
    for folder in ("bin", "etc/llmcrate", "var/lib/llmcrate/models/blobs"):
        found += [p.name for p in (prefix / folder).iterdir()
                  if ".llmcrate-bak." in p.name or ".tmp." in p.name or "partial-" in p.name]
    return found


def _killed(r: subprocess.CompletedProcess[str]) -> bool:
    return r.returncode in (-9, 137)


def test_killed_upgrades_are_undone_or_finished(built: Built, tmp_path: Path) -> None:
    bundle = _extract(built, tmp_path / "media")
    prefix = tmp_path / "opt"
    lib, models = prefix / "lib/llmcrate", prefix / "var/lib/llmcrate/models"
    first = _install(bundle, prefix, 18441)
    assert first.returncode == 0, first.stdout + first.stderr
    conf = (lib / "install.conf").read_text()
    assert "127.0.0.1:18441" in conf

    # killed between the two renames: no program at PREFIX/lib/llmcrate for a moment ...
    r = _install(bundle, prefix, 18442, kill_at="between-renames")
    assert _killed(r), r.stdout + r.stderr
    assert not lib.exists()
    # ... which the next run's first step puts back, exactly as it was
    assert "rolled back install run" in _recover(bundle, prefix)
    assert (lib / "install.conf").read_text() == conf
    assert _leftovers(prefix) == []

    # killed while registering a model (its manifest was journaled, about to be written);
    # plus a dead registration's partial copy in the store, and a live process's one
    (models / TINYBOT).unlink()
    dead = models / "blobs" / f"sha256-{'0' * 64}.llmcrate-partial-{_dead_pid()}"
    alive = models / "blobs" / f"sha256-{'1' * 64}.llmcrate-partial-{os.getpid()}"
    ollamas = models / "blobs" / f"sha256-{'2' * 64}-partial-0"     # Ollama's own part file
    for f in (dead, alive, ollamas):
        f.write_bytes(b"x")
    r = _install(bundle, prefix, 18443, kill_at="register")
    assert _killed(r), r.stdout + r.stderr
    assert dead.name in r.stdout and not dead.exists()                 # its first step
    assert alive.exists() and ollamas.exists()
    assert "18443" in (lib / "install.conf").read_text()               # the new program was in
    assert "rolled back install run" in _recover(bundle, prefix)
    assert (lib / "install.conf").read_text() == conf                   # the old one is back
    assert not (models / TINYBOT).exists()                              # as before that run
    alive.unlink()
    ollamas.unlink()
    assert _leftovers(prefix) == []

    # killed after its commit point: the next run finishes the cleanup, keeps the new version
    r = _install(bundle, prefix, 18444, kill_at="committed")
    assert _killed(r), r.stdout + r.stderr
    assert [p for p in _leftovers(prefix) if p.startswith(".llmcrate.old.")]
    assert "finished the cleanup" in _recover(bundle, prefix)
    assert "18444" in (lib / "install.conf").read_text()
    assert (models / TINYBOT).is_file()
    assert _leftovers(prefix) == []

    # killed before the switch, then a whole run: it recovers first and leaves nothing behind
    r = _install(bundle, prefix, 18445, kill_at="staged")
    assert _killed(r), r.stdout + r.stderr
    assert "18444" in (lib / "install.conf").read_text()                # never stopped being there
    final = _install(bundle, prefix, 18446)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "removed the leftovers" in final.stdout or "rolled back" in final.stdout
    assert "18446" in (lib / "install.conf").read_text()
    assert _leftovers(prefix) == []


def _dead_pid() -> int:
    """A PID no process has: that of a child that has exited and been reaped."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_leftovers_of_install_runs_without_a_state_file(tmp_path: Path) -> None:
    """install.sh before this fix kept no state file: killed between its renames it left only
    .llmcrate.old.PID (restored), otherwise leftovers that are simply removed."""
    from runtime.bundle.register import recover_install

    lib, models = tmp_path / "lib/llmcrate", tmp_path / "models"
    pid = _dead_pid()
    old, stage = tmp_path / f"lib/.llmcrate.old.{pid}", tmp_path / f"lib/.llmcrate.new.{pid}"
    for d, text in ((old, "previous"), (stage, "staged")):
        d.mkdir(parents=True)
        (d / "install.conf").write_text(text)
    (tmp_path / f"lib/.llmcrate.models.{pid}.json").write_text('{"blobs": [], "manifests": []}')
    (models / "blobs").mkdir(parents=True)
    assert recover_install(lib, models)
    assert (lib / "install.conf").read_text() == "previous"
    assert [p.name for p in (tmp_path / "lib").iterdir()] == ["llmcrate"]

    # the program is in place: a leftover old copy (killed while cleaning up) just goes
    old.mkdir()
    (old / "install.conf").write_text("older")
    assert recover_install(lib, models) == [f"removed the leftovers of install run {pid}"]
    assert (lib / "install.conf").read_text() == "previous"
    assert [p.name for p in (tmp_path / "lib").iterdir()] == ["llmcrate"]
