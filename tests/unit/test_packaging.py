"""pyproject.toml lists packages by hand (templates/ ships as bundler.templates): keep it whole."""
from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for top in ("runtime", "bundler") for p in (ROOT / top).rglob("__init__.py")}
    assert found <= listed, f"add to pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"
    assert "bundler.templates" in listed


def test_wheel_carries_the_templates(tmp_path: Path) -> None:
    """`pip wheel .` (what a developer or a packager runs) puts templates/ in bundler/templates."""
    import subprocess
    import zipfile

    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path),
                        str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("llmcrate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("install.sh", "start.sh", "uninstall.sh", "llmcrate.service", "llmcrate.env"):
        assert f"bundler/templates/{f}" in names
    assert "runtime/cli/__init__.py" in names and "runtime/prompt/__init__.py" in names
    # the Ansible content `llmcrate deploy` runs and `--emit` writes
    from bundler.deploy import PLAYBOOK_FILES

    for rel in (*PLAYBOOK_FILES, "haproxy.cfg.j2"):
        assert f"bundler/fleet/{rel}" in names
