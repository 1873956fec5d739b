"""The air-gapped target may only have Python 3.9 (RHEL 9, Debian 11): runtime/ must not use
anything newer. vermin reads the code (annotations are strings there: `from __future__`)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_runtime_needs_no_newer_python_than_3_9() -> None:
    vermin = str(Path(sys.executable).with_name("vermin"))
    r = subprocess.run([vermin, "--no-tips", "--eval-annotations=no",
                        "-t=3.9-", "--violations", str(ROOT / "runtime")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]
