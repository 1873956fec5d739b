"""`llmcrate deploy --emit`: the playbook for operators who run Ansible/AWX themselves, and the
bundle facts deploy computes (tar or split volumes; compressed tars refused)."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bundle.conftest import Built
from bundler.deploy import PLAYBOOK_FILES, bundle_facts
from runtime.cli import main
from runtime.errors import BundleError


def test_emit_writes_a_playbook_ansible_accepts(tmp_path: Path, built: Built) -> None:
    out = tmp_path / "fleet"
    r = CliRunner().invoke(main, ["deploy", "--emit", str(out), str(built.tar)])
    assert r.exit_code == 0, r.output
    for rel in (*PLAYBOOK_FILES, "bundle-vars.yml"):
        assert (out / rel).is_file(), rel
    facts = yaml.safe_load((out / "bundle-vars.yml").read_text())
    assert facts["llmcrate_bundle_sha256"] == hashlib.sha256(built.tar.read_bytes()).hexdigest()
    assert facts["llmcrate_bundle_top"] == "demo-1.0"
    assert facts["llmcrate_bundle_models"] == ["tiny:latest", "tinybot:latest"]
    playbook = Path(sys.executable).parent / "ansible-playbook"
    if not playbook.exists():
        pytest.skip("ansible-playbook not installed (pip install 'llmcrate[fleet]')")
    check = subprocess.run([str(playbook), "--syntax-check", "-i", "localhost,", str(out / "site.yml"),
                            "-e", f"@{out / 'bundle-vars.yml'}"], capture_output=True, text=True,
                           cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert check.returncode == 0, check.stdout + check.stderr


def test_facts_of_split_volumes_are_those_of_the_whole_tar(tmp_path: Path, built: Built) -> None:
    data = built.tar.read_bytes()
    cut = len(data) // 2
    (tmp_path / "demo.tar.000").write_bytes(data[:cut])
    (tmp_path / "demo.tar.001").write_bytes(data[cut:])
    facts = bundle_facts(tmp_path / "demo.tar.001")
    assert [p.name for p in facts.files] == ["demo.tar.000", "demo.tar.001"]
    assert facts.sha256 == hashlib.sha256(data).hexdigest() and facts.size == len(data)
    assert bundle_facts(tmp_path / "demo.tar").files == facts.files


def test_unusable_bundles_are_one_clear_error(tmp_path: Path, built: Built) -> None:
    gz = tmp_path / "demo.tar.gz"
    subprocess.run(["gzip", "-c", str(built.tar)], stdout=open(gz, "wb"), check=True)
    with pytest.raises(BundleError, match="uncompressed"):
        bundle_facts(gz)
    with pytest.raises(BundleError, match="no such bundle"):
        bundle_facts(tmp_path / "missing.tar")
    shutil.copy(built.tar, tmp_path / "x.tar")
    (tmp_path / "x.tar").write_bytes(b"not a tar" * 100)
    with pytest.raises(BundleError):
        bundle_facts(tmp_path / "x.tar")
