"""runtime/ never imports bundler/ nor online-only packages (the air-gapped target lacks them):
not at the top of a module, not lazily, not by an import string. bundler plugs in through
entry points (``llmcrate.commands``, ``llmcrate.sources``) instead."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("bundler", "huggingface_hub")


def _names_forbidden(name: str) -> bool:
    return any(name == f or name.startswith((f + ".", f + ":")) for f in FORBIDDEN)


def test_no_runtime_module_imports_bundler_or_huggingface_hub() -> None:
    found = []
    for path in sorted((ROOT / "runtime").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value]          # "bundler.cli:bundle", import_module("bundler...")
            line = getattr(node, "lineno", 0)
            found += [f"{path.relative_to(ROOT)}:{line}: {n}" for n in names if _names_forbidden(n)]
    assert not found, "\n".join(found)


_BLOCKED = """
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("bundler", "huggingface_hub"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
from click.testing import CliRunner
from runtime.cli import main

runner = CliRunner()
help_out = runner.invoke(main, ["--help"]).output
pull = runner.invoke(main, ["pull", "hf.co/someone/Some-GGUF:Q4_K_M"])
print(json.dumps({"help": help_out, "pull_code": pull.exit_code, "pull": pull.output,
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                    ("bundler", "huggingface_hub"))}))
"""


def test_cli_works_without_bundler_and_says_where_hf_pulls_run(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "m"),
           "OLLAMA_HOST": "127.0.0.1:9", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", _BLOCKED], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["modules"] == []
    assert "pull" in out["help"] and "bundle" not in out["help"]
    assert out["pull_code"] == 1
    assert "Error: Hugging Face pulls need the online host's extras" in out["pull"]
    assert "Hint: pull it on the online host" in out["pull"]
    assert "Traceback" not in out["pull"]


def test_registry_pulls_do_not_import_bundler() -> None:
    code = ("import sys; from click.testing import CliRunner; from runtime.cli import main; "
            "from runtime.transfer.sources import resolve; CliRunner().invoke(main, ['pull', '--help']); "
            "resolve('qwen2.5:0.5b'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'bundler'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# The stages of runtime/ (docs/architecture.md): each may import only the stages listed for it,
# at the top of a module or lazily. Shared modules (runtime/*.py) are open to all.
ALLOWED = {
    "api": {"serve", "transfer", "models", "prompt"},
    "cli": {"api", "serve", "transfer", "models", "prompt"},
    "serve": {"models", "prompt"},
    "transfer": {"models"},
    "models": {"prompt"},
    "prompt": set(),
    "bundle": {"serve"},          # preflight asks serve.hardware which runtimes this host can run
}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_runtime_stages_import_one_way() -> None:
    wrong = []
    for path in sorted((ROOT / "runtime").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        here = _stage(module)
        if here is None:
            if module.count(".") == 1:       # a shared module imports no stage at all
                here = "shared"
            else:
                continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [f"{node.module}.{a.name}" for a in node.names] if node.module == "runtime" \
                    else [node.module]
            for target in targets:
                there = _stage(target) if target.startswith("runtime.") else None
                if there and there != here and there not in ALLOWED.get(here, set()):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {here} imports {target}")
    assert not wrong, "\n".join(wrong)
