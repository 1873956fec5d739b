"""The CLI's modules import one way: no cycle among runtime/cli/*.py (lazy imports inside
functions count too), and each one imports alone in a fresh interpreter."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "runtime" / "cli"
MODULES = sorted(f"runtime.cli.{p.stem}" for p in CLI.glob("*.py")
                 if p.stem not in ("__init__", "__main__"))


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in CLI.glob("*.py"):
        name = "runtime.cli" if path.stem == "__init__" else f"runtime.cli.{path.stem}"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "runtime.cli":
                    deps |= {f"runtime.cli.{a.name}" for a in node.names}
                elif node.module.startswith("runtime.cli."):
                    deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("runtime.cli.")}
        graph[name] = deps - {name}
    return graph


def test_no_import_cycle_between_cli_modules() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            pytest.fail("import cycle: " + " -> ".join([*path[path.index(node):], node]))
        if node in done:
            return
        for dep in sorted(graph.get(node, ())):
            visit(dep, [*path, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])


@pytest.mark.parametrize("module", MODULES)
def test_each_cli_module_imports_alone(module: str) -> None:
    r = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
