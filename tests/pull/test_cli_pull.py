"""``llmcrate pull`` as a user runs it: a subprocess against the live fake registry, killed
mid-blob and re-run; plus the CLI's error lines."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime.cli import main
from runtime.models.store import Store
from runtime.progress import ProgressEvent, StatusPrinter
from runtime.transfer.download import state_path

ROOT = Path(__file__).resolve().parents[2]
MB = 1_000_000


def _pull_cmd(name: str) -> list[str]:
    return [sys.executable, "-m", "runtime.cli", "pull", name, "--insecure"]


def test_kill_mid_blob_then_rerun_resumes(registry, tmp_path, models_dir):
    blob = tmp_path / "big.gguf"
    size = 12 * MB
    blob.write_bytes(b"GGUF" + os.urandom(size - 4))
    model = registry.add_model("library/big", blob, template="{{ .Prompt }}")
    registry.faults.slow = 3 * MB
    env = {**os.environ, "OLLAMA_MODELS": str(models_dir), "LLMCRATE_PULL_PARTS": "1"}
    name = f"{registry.host}/library/big:latest"
    proc = subprocess.Popen(_pull_cmd(name), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while registry.bytes_served(model.model_digest) < 5 * MB:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "pull made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    first = registry.bytes_served(model.model_digest)
    store = Store(models_dir)
    assert store.list_models() == []  # nothing half-registered
    assert state_path(store.partial_path(model.model_digest)).exists()

    registry.faults.slow = None
    done = subprocess.run(_pull_cmd(name), cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    second = registry.bytes_served(model.model_digest) - first
    # at most ~0.5 s of state lag + socket buffers fetched again; never the whole blob
    assert second <= size - first + 2 * MB, (first, second)
    assert second < size * 0.8
    assert store.blob_path(model.model_digest).read_bytes() == blob.read_bytes()
    assert store.resolve(name).raw == model.manifest
    assert b"success" in done.stderr


def test_cli_pull_prints_ollama_statuses(registry, small_gguf, models_dir):
    registry.add_model("library/small", small_gguf)
    result = CliRunner().invoke(main, ["pull", f"{registry.host}/library/small", "--insecure",
                                       "--parts", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "pulling manifest"
    assert lines[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    assert "\r" not in result.output  # no bars when not a terminal
    assert Store(models_dir).list_models()


def test_cli_pull_unknown_model_is_one_line(registry):
    result = CliRunner().invoke(main, ["pull", f"{registry.host}/library/nope", "--insecure"])
    assert result.exit_code == 1
    assert f'Error: model "{registry.host}/library/nope:latest" not found' in result.output
    assert "Traceback" not in result.output


def test_cli_hf_pull_without_extras_says_so(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "bundler.huggingface", None)  # import now fails
    result = CliRunner().invoke(main, ["pull", "hf.co/someone/Some-GGUF:Q4_K_M"])
    assert result.exit_code == 1
    assert "Hugging Face pulls need the online host's extras" in result.output


def test_status_printer_draws_bars_only_on_a_terminal():
    out = io.StringIO()
    p = StatusPrinter(stream=out)
    p(ProgressEvent("pulling manifest"))
    for done in (0, 50, 100):
        p(ProgressEvent("pulling abc", digest="sha256:abc", total=100, completed=done))
    p(ProgressEvent("success"))
    p.close()
    assert out.getvalue() == "pulling manifest\npulling abc\nsuccess\n"
    tty = io.StringIO()
    q = StatusPrinter(stream=tty, bars=True)
    q(ProgressEvent("pulling abc", digest="sha256:abc", total=100, completed=100))
    q.close()
    assert "100/100" in tty.getvalue()
