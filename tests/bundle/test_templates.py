"""Generated files: golden copies, shell syntax (sh -n, bash -n, shellcheck), systemd-analyze verify.

Regenerate the goldens after an intended template change with ``UPDATE_GOLDEN=1``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from bundler.pack import (
    BundledModel,
    _envquote,
    render_templates,
    template_context,
    template_env,
)
from bundler.spec import parse_spec
from runtime.bundle.install import substitute
from runtime.models.store import MEDIA_CONFIG, MEDIA_MODEL, Layer, Manifest

GOLDEN = Path(__file__).parent / "golden"
SCRIPTS = ("install.sh", "start.sh", "uninstall.sh")


def _manifest(size: int, seed: str) -> Manifest:
    d = lambda s: "sha256:" + hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    return Manifest.build(config=Layer(MEDIA_CONFIG, d(seed + "c"), 300),
                          layers=[Layer(MEDIA_MODEL, d(seed + "m"), size)])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("spec")
    spec = parse_spec({
        "name": "golden", "version": "2.0", "models": ["qwen2.5:0.5b", "tiny:latest"],
        "runtimes": {"cuda12": {"index": "https://example.org/whl/cu124", "cuda": "12.4"}},
        "python": ["3.10", "3.11", "3.12"],
        "service": {"host": "0.0.0.0:11434", "keep_alive": "24h", "num_parallel": 2, "max_loaded_models": 2,
                    "env": {"OLLAMA_ORIGINS": "https://chat.example.org", "HTTPS_PROXY": 'a "quoted" $value'}},
    }, base_dir=tmp, env={})
    models = [BundledModel(spec.models[0].target, _manifest(397_807_936, "a")),
              BundledModel(spec.models[1].target, _manifest(440_192, "b"))]
    ctx = template_context(spec, models=models, runtimes={"cpu": {"source": "source build"},
                                                          "cuda12": {"source": "wheel index", "cuda": "12.4"}},
                           llmcrate_wheel="llmcrate-0.1.0-py3-none-any.whl")
    return render_templates(ctx)


@pytest.mark.parametrize("name", ["install.sh", "start.sh", "uninstall.sh", "llmcrate.service",
                                  "llmcrate.env", "README.txt"])
def test_golden(rendered: dict[str, bytes], name: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(rendered[name])
    assert rendered[name].decode() == golden.read_text(), f"{name} differs from {golden}"


def test_smoke_model_is_the_smallest(rendered: dict[str, bytes]) -> None:
    assert b"--model tiny:latest" in rendered["install.sh"]


@pytest.mark.parametrize("shell", ["sh", "bash", "dash"])
@pytest.mark.parametrize("name", SCRIPTS)
def test_shell_syntax(rendered: dict[str, bytes], tmp_path: Path, shell: str, name: str) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    (tmp_path / name).write_bytes(rendered[name])
    r = subprocess.run([exe, "-n", str(tmp_path / name)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_shellcheck(rendered: dict[str, bytes], tmp_path: Path, name: str) -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    (tmp_path / name).write_bytes(rendered[name])
    # SC1091: install.conf/llmcrate.env are written at install time, so not there to follow.
    r = subprocess.run([exe, "--shell=sh", "--severity=style", "--exclude=SC1091", str(tmp_path / name)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_env_file_reads_back_in_sh(rendered: dict[str, bytes], tmp_path: Path) -> None:
    env = tmp_path / "llmcrate.env"
    env.write_bytes(rendered["llmcrate.env"])
    r = subprocess.run(["sh", "-c", 'set -a; . "$1"; printf "%s|%s|%s" "$OLLAMA_KEEP_ALIVE" "$HTTPS_PROXY" '
                        '"$OLLAMA_NUM_PARALLEL"', "sh", str(env)], capture_output=True, text=True, check=True)
    assert r.stdout == '24h|a "quoted" $value|2'
    assert _envquote("plain-value_1.0") == "plain-value_1.0"


def test_unit_is_hardened_and_verifies(rendered: dict[str, bytes], tmp_path: Path) -> None:
    unit_src = tmp_path / "llmcrate.service.in"
    unit_src.write_bytes(rendered["llmcrate.service"])
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "start.sh").write_bytes(rendered["start.sh"])
    (lib / "start.sh").chmod(0o755)
    unit = tmp_path / "llmcrate.service"
    substitute(unit_src, unit, {"LIB": str(lib), "ETC_DIR": str(tmp_path / "etc"),
                                "MODELS_DIR": str(tmp_path / "models"), "PROTECT_HOME": "yes"})
    text = unit.read_text()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", f"ReadWritePaths={tmp_path / 'models'}",
                 "Restart=always", f"EnvironmentFile={tmp_path / 'etc'}/llmcrate.env", "User=llmcrate",
                 f"ExecStart={lib}/start.sh", "ProtectHome=yes"):
        assert line in text.splitlines(), line
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    r = subprocess.run([exe, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    # systemd-analyze exits 0 on unknown keys and bad values, but names the file and line
    output = r.stdout + r.stderr
    assert r.returncode == 0 and str(unit) not in output and "Accepting" not in output, output
    bad = tmp_path / "bad.service"
    bad.write_text(text.replace("NoNewPrivileges=yes", "NoNewPrivileges=perhaps"))
    r = subprocess.run([exe, "verify", "--man=no", str(bad)], capture_output=True, text=True)
    assert str(bad) in r.stdout + r.stderr  # the check above can fail


def test_subst_refuses_leftover_placeholders(tmp_path: Path) -> None:
    from runtime.errors import BundleError
    (tmp_path / "u.in").write_text("ExecStart=@LIB@/start.sh @OTHER@\n")
    with pytest.raises(BundleError, match="@OTHER@"):
        substitute(tmp_path / "u.in", tmp_path / "u", {"LIB": "/x"})
    assert not (tmp_path / "u").exists()


def test_strict_undefined() -> None:
    with pytest.raises(jinja2.UndefinedError):
        template_env().get_template("llmcrate.env").render(top="x")
