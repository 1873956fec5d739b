"""Differential tests against Go's own text/template (needs a Go toolchain; skipped without).

``gocheck/`` is a 70-line Go program that executes templates with ``missingkey=zero`` and
Ollama's ``json`` function. These tests feed it the construct cases, a few hundred random
templates (trim markers, comments, control structures, pipelines) and the family templates
with Ollama-shaped values, and require byte-identical output (or an error on both sides).
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import TemplateError
from runtime.prompt import GoTemplate

HERE = Path(__file__).parent
DATA = HERE / "data"

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="needs a Go toolchain")

# features newer than the Go that may be installed here (Ollama builds with a current Go)
NEWER_GO = ("range 3", "range .N }}", "else with")


@pytest.fixture(scope="module")
def gocheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gocheck") / "gocheck"
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=HERE / "gocheck", check=True,
                   env={**__import__("os").environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
                   capture_output=True, timeout=300)
    return out


def run_go(binary: Path, cases: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    inp = "".join(json.dumps({"t": t, "d": d}) + "\n" for t, d in cases)
    res = subprocess.run([str(binary)], input=inp, capture_output=True, text=True, check=True,
                         timeout=120)
    return [json.loads(line) for line in res.stdout.splitlines()]


def run_py(text: str, data: Any) -> dict[str, Any]:
    try:
        tmpl = GoTemplate.parse(text)
    except TemplateError as e:
        return {"perr": str(e)}
    try:
        return {"out": tmpl.execute(data)}
    except TemplateError as e:
        return {"xerr": str(e)}


def outcome(r: dict[str, Any]) -> tuple[str, str | None]:
    if "perr" in r:
        return "parse error", None
    if "xerr" in r:
        return "exec error", None
    return "ok", r["out"]


def assert_agree(binary: Path, cases: list[tuple[str, Any]]) -> None:
    disagree = []
    for (t, d), g in zip(cases, run_go(binary, cases)):
        p = run_py(t, d)
        if outcome(g) != outcome(p):
            disagree.append((t, g, p))
    assert not disagree, "\n".join(f"{t!r}\n  go: {g}\n  py: {p}" for t, g, p in disagree[:10])


def test_construct_cases(gocheck: Path) -> None:
    from tests.prompt.test_gotemplate import test_construct
    cases = []
    for text, data, _ in test_construct.pytestmark[0].args[1]:
        try:
            json.dumps(data)
        except TypeError:
            continue        # Go-side data must be JSON
        if not any(s in text for s in NEWER_GO):
            cases.append((text, data))
    assert len(cases) > 80
    assert_agree(gocheck, cases)


DATA_FUZZ = {"S": "héllo <b>&'\"", "N": 42, "Z": 0, "E": "", "L": [1, "two", 3.5],
             "M": {"b": 2, "a": "x"}}
TEXTS = ["", " ", "\r\n", "\n", "  \n\t", "x", "a b", "\n\nline\n", " - ", "}", "{", "-}"]
EXPRS = [".S", ".N", ".Z", ".E", ".L", ".M", ".M.a", ".Missing", "$", "$.N", ".", '"q"', "1",
         "-2", "3.5", "true", "len .L", "len .S", "index .L 1", 'index .M "a"', "slice .S 1 2",
         "eq .N 42", 'ne .S "x"', "lt .N 50", "and .N .E", "or .E .S", "not .Z", "print .N .S nil",
         'printf "%v-%d|%5.1f" .L .N 2.25', "html .S", "js .S", "urlquery .S", "json .M",
         "(len .L)", '.N | printf "%03d"', 'len .L | printf "%x"']


def random_template(rng: random.Random, depth: int = 0, in_range: bool = False) -> str:
    def left() -> str:
        return rng.choice(["{{", "{{- ", "{{-  ", "{{-\t", "{{-\n", "{{\n"])

    def right() -> str:
        return rng.choice(["}}", " -}}", "\t-}}", "\n-}}", "\n}}"])

    def text() -> str:
        return "".join(rng.choice(TEXTS) for _ in range(rng.randint(0, 3)))

    out = []
    for _ in range(rng.randint(1, 4)):
        k = rng.random()
        out.append(text())
        if k < 0.35 or depth > 2:
            out.append(f"{left()}{rng.choice(EXPRS)}{right()}")
        elif k < 0.45:
            out.append(f"{left()}/* c */{right()}")
        elif k < 0.6:
            other = (f"{left()}else{right()}{random_template(rng, depth + 1, in_range)}"
                     if rng.random() < 0.5 else "")
            out.append(f"{left()}{rng.choice(['if', 'with'])} {rng.choice(EXPRS)}{right()}"
                       f"{random_template(rng, depth + 1, in_range)}{other}{left()}end{right()}")
        elif k < 0.8:
            decl = rng.choice(["", "$i, $v := ", "$v := "])
            out.append(f"{left()}range {decl}{rng.choice(['.L', '.M', '.Missing', '.E'])}{right()}"
                       f"{random_template(rng, depth + 1, True)}{left()}end{right()}")
        elif k < 0.9 and in_range:
            out.append(f"{left()}if eq . 1{right()}{left()}{rng.choice(['break', 'continue'])}"
                       f"{right()}{left()}end{right()}")
        else:
            out.append(f"{left()}$x := {rng.choice(EXPRS)}{right()}{left()}$x{right()}")
    out.append(text())
    return "".join(out)


def test_random_templates(gocheck: Path) -> None:
    rng = random.Random(20261121)
    assert_agree(gocheck, [(random_template(rng), DATA_FUZZ) for _ in range(400)])


ATOMS = [".S", ".N", ".Z", ".E", ".L", ".M", ".M.a", ".M.b", ".Missing", "$", ".", '"q"',
         '"héllo"', "1", "0", "-2", "3.5", "true", "false", "nil", "$x", "$.L", "'c'", "`r`"]
FUNCS1 = ["len", "not", "html", "js", "urlquery", "print", "println", "json"]
# no index/slice here: Go refuses indexes that come out of a map[string]any (interface-typed),
# which Ollama's typed values never produce
FUNCS2 = ["eq", "ne", "lt", "le", "gt", "ge", "and", "or", "print"]
VERBS = ["%v", "%d", "%s", "%q", "%5.2f", "%x", "%t", "%v|%v", "%-4v|", "%03d"]


def random_expression_template(rng: random.Random) -> str:
    def arg(d: int) -> str:
        return f"({expr(d + 1)})" if rng.random() < 0.3 else rng.choice(ATOMS)

    def expr(d: int = 0) -> str:
        k = rng.random()
        if d > 2 or k < 0.4:
            return rng.choice(ATOMS)
        if k < 0.6:
            return f"{rng.choice(FUNCS1)} {arg(d)}"
        if k < 0.8:
            return f"{rng.choice(FUNCS2)} {arg(d)} {arg(d)}"
        if k < 0.9:
            return f'printf "{rng.choice(VERBS)}" {arg(d)} {arg(d)}'
        return f"{arg(d)} | {rng.choice(FUNCS1)}"

    parts = ["{{ $x := .N }}"]
    if rng.random() < 0.3:
        parts.insert(0, '{{ define "T" }}[{{ . }}{{ if . }}{{ $ }}{{ end }}]{{ end }}')
    for _ in range(rng.randint(1, 4)):
        k = rng.random()
        if k < 0.5:
            parts.append("{{ " + expr() + " }}")
        elif k < 0.6 and "define" in parts[0]:
            parts.append('{{ template "T" ' + arg(0) + " }}")
        elif k < 0.75:
            parts.append("{{ if " + expr() + " }}Y{{ else }}N{{ end }}")
        elif k < 0.85:
            parts.append("{{ with " + expr() + " }}<{{ . }}>{{ end }}")
        elif k < 0.95:
            parts.append("{{ $x = " + expr() + " }}{{ $x }}")
        else:
            parts.append('{{ block "B" ' + arg(0) + " }}b{{ . }}{{ end }}")
        parts.append(rng.choice(["", " ", "\n", "-"]))
    return "".join(parts)


def test_random_expressions(gocheck: Path) -> None:
    rng = random.Random(7)
    data = {**DATA_FUZZ, "L": [1, "two", 3.5, None]}
    assert_agree(gocheck, [(random_expression_template(rng), data) for _ in range(400)])


def test_family_goldens_match_go(gocheck: Path) -> None:
    """Every golden prompt of the .Messages path (tool cases included) is what Go renders from
    Ollama-shaped values (gocheck/ollama.go builds them from the same /api/chat JSON)."""
    tools = json.loads((DATA / "tools-defs.json").read_text())
    rows, files = [], []
    for d in sorted((DATA / "golden").iterdir()):
        if d.name == "phi-3-legacy":        # legacy path: turn by turn, not one execution
            continue
        text = (DATA / "templates" / f"{d.name}.gotmpl").read_text(encoding="utf-8")
        for f in sorted(d.iterdir()):
            msgs = json.loads((DATA / "messages" / f"{f.name}.json").read_text())
            rows.append({"t": text, "messages": msgs,
                         "tools": tools if f.name in ("tools", "tools-single") else None})
            files.append(f)
    inp = "".join(json.dumps(r) + "\n" for r in rows)
    res = subprocess.run([str(gocheck)], input=inp, capture_output=True, text=True, check=True,
                         timeout=120)
    outs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(outs) == len(files) > 40
    for f, g in zip(files, outs):
        assert "xerr" not in g and g.get("out") == f.read_text(encoding="utf-8"), f
