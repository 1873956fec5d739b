"""Templates Ollama ships, rendered for Ollama's standard message sets, byte for byte.

data/templates/*.gotmpl are the templates from ollama/ollama's template/ directory (and the
registry's llama3.1 / Ollama's tools testdata qwen2.5); data/golden/<template>/<case> hold the
prompts Ollama produces. The golden files were checked by hand against Go's semantics and,
where Ollama has them, against ollama/ollama template/testdata (same message texts); see
data/README.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.prompt import chat_prompt, generate_prompt

DATA = Path(__file__).parent / "data"
TOOLS = json.loads((DATA / "tools-defs.json").read_text())


def _cases() -> list[tuple[str, str]]:
    out = []
    for d in sorted((DATA / "golden").iterdir()):
        for f in sorted(d.iterdir()):
            out.append((d.name, f.name))
    return out


def _read(p: Path) -> str:
    with open(p, encoding="utf-8", newline="") as f:
        return f.read()


@pytest.mark.parametrize("template,case", _cases())
def test_family_golden(template: str, case: str) -> None:
    text = _read(DATA / "templates" / f"{template}.gotmpl")
    messages = json.loads(_read(DATA / "messages" / f"{case}.json"))
    expected = _read(DATA / "golden" / template / case)
    got = chat_prompt(template=text, jinja_template=None, messages=messages,
                      tools=TOOLS if case in ("tools", "tools-single") else None)
    assert got == expected


def test_every_family_is_covered() -> None:
    names = {d.name for d in (DATA / "golden").iterdir()}
    for family in ["chatml", "llama2-chat", "llama3-instruct", "llama3.1", "mistral-instruct",
                   "gemma-instruct", "phi-3", "qwen2.5", "command-r", "deepseek"]:
        assert family in names
    for family in ["qwen2.5", "llama3.1", "command-r", "deepseek"]:
        assert (DATA / "golden" / family / "tools").is_file()


def test_qwen_fill_in_the_middle() -> None:
    text = _read(DATA / "templates" / "qwen2.5.gotmpl")
    got = generate_prompt(template=text, jinja_template=None, prompt="def add(",
                          suffix="return x")
    assert got == "<|fim_prefix|>def add(<|fim_suffix|>return x<|fim_middle|>"


def test_deepseek_think_flags() -> None:
    text = _read(DATA / "templates" / "deepseek.gotmpl")
    msgs = [{"role": "user", "content": "hi"}]
    # think explicitly off: the template pre-fills an empty think block; the text between
    # "-}}" and the untrimmed "{{ end }}" keeps its trailing newline and indentation
    off = chat_prompt(template=text, jinja_template=None, messages=msgs, think=False)
    assert off == "<｜User｜>hi<｜Assistant｜><think> </think>\n    "
    unset = chat_prompt(template=text, jinja_template=None, messages=msgs)
    assert unset == "<｜User｜>hi<｜Assistant｜>"
