"""list/show/create/cp/rm go through the server when one answers: the CLI's own
OLLAMA_MODELS points at an empty folder, so every effect seen is the server's."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli.conftest import LiveServer
from runtime.models.store import Store


def _cli(server: LiveServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = server.env(tmp_path)
    env["OLLAMA_MODELS"] = str(tmp_path / "not-the-servers-store")
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_models_commands_use_the_server(live_server: LiveServer, tiny_gguf: Path,
                                        tmp_path: Path) -> None:
    (tmp_path / "w.gguf").write_bytes(tiny_gguf.read_bytes())
    (tmp_path / "Modelfile").write_text("FROM ./w.gguf\nSYSTEM via the server\n")
    r = _cli(live_server, tmp_path, "create", "viaserver", "-f", "Modelfile")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[-1] == "success"
    server_store = Store(live_server.models)
    assert server_store.exists("viaserver")
    assert not (tmp_path / "not-the-servers-store").exists()

    r = _cli(live_server, tmp_path, "list")
    assert r.returncode == 0 and "viaserver:latest" in r.stdout and "tiny:latest" in r.stdout
    r = _cli(live_server, tmp_path, "show", "viaserver", "--system")
    assert r.stdout.strip() == "via the server"
    r = _cli(live_server, tmp_path, "cp", "viaserver", "viaserver2")
    assert r.returncode == 0 and server_store.exists("viaserver2")
    r = _cli(live_server, tmp_path, "rm", "viaserver", "viaserver2")
    assert r.returncode == 0, r.stderr
    assert not server_store.exists("viaserver") and not server_store.exists("viaserver2")
    r = _cli(live_server, tmp_path, "rm", "viaserver")
    assert r.returncode == 1 and 'model "viaserver" not found' in r.stderr


def test_create_through_server_refuses_a_bad_file_before_upload(live_server: LiveServer,
                                                                tmp_path: Path) -> None:
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf at all")
    (tmp_path / "Modelfile").write_text("FROM ./bad.gguf\n")
    r = _cli(live_server, tmp_path, "create", "bad", "-f", "Modelfile")
    assert r.returncode == 1 and "bad magic" in r.stderr
    assert not Store(live_server.models).exists("bad")


def test_pull_goes_through_the_server(live_server: LiveServer, tiny_gguf: Path,
                                      tmp_path: Path) -> None:
    """As `ollama pull`: the model lands in the server's store, not the CLI's OLLAMA_MODELS."""
    from tests.fakes import FakeRegistry

    with FakeRegistry(tmp_path / "reg") as reg:
        reg.add_model("library/pulled:latest", tiny_gguf)
        name = f"{reg.host}/library/pulled:latest"
        r = _cli(live_server, tmp_path, "pull", name, "--insecure")
        assert r.returncode == 0, r.stderr
        assert "success" in r.stderr + r.stdout
        assert Store(live_server.models).exists(name)
        assert not (tmp_path / "not-the-servers-store").exists()
        r = _cli(live_server, tmp_path, "pull", f"{reg.host}/library/nosuch:latest", "--insecure")
        assert r.returncode == 1 and "not found" in r.stderr
        assert "Traceback" not in r.stderr
    _cli(live_server, tmp_path, "rm", name)
