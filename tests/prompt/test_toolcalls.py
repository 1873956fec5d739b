"""ToolCallParser: tool calls out of model output as Ollama's tools parser finds them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.prompt import ToolCallParser, template_tool_tag

DATA = Path(__file__).parent / "data"
TOOLS = json.loads((DATA / "tools-defs.json").read_text())


def _tmpl(name: str) -> str:
    return (DATA / "templates" / f"{name}.gotmpl").read_text(encoding="utf-8")


def feed(p: ToolCallParser, text: str, step: int) -> tuple[str, list[dict]]:
    content, calls = "", []
    for i in range(0, len(text), step):
        c, k = p.add(text[i:i + step])
        content += c
        calls += k
    c, k = p.finish()
    return content + c, calls + k


@pytest.mark.parametrize("name,tag", [
    ("qwen2.5", "<tool_call>"), ("llama3.1", ""), ("chatml", ""),
    # the first text inside {{ if .ToolCalls }}, trimmed, cut before "{"
    ("command-r", "Action: ```json\n["),
    # deepseek's block starts with an action ({{ "\n" }}), so Ollama finds no text: JSON mode
    ("deepseek", ""),
])
def test_tag_comes_from_the_template(name: str, tag: str) -> None:
    assert template_tool_tag(_tmpl(name)) == tag


def test_mistral_style_tag() -> None:
    t = ('{{ range .Messages }}{{ if .ToolCalls }}[TOOL_CALLS] [{{ range .ToolCalls }}'
         '{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{ end }}]'
         '{{ end }}{{ end }}')
    assert template_tool_tag(t) == "[TOOL_CALLS] ["


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_qwen_tool_call_streamed(step: int) -> None:
    out = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris", '
           '"unit": "celsius"}}\n</tool_call>')
    content, calls = feed(ToolCallParser(_tmpl("qwen2.5"), TOOLS), out, step)
    assert content == "Let me check.\n"
    assert calls == [{"function": {"index": 0, "name": "get_weather",
                                   "arguments": {"location": "Paris", "unit": "celsius"}}}]


def test_several_calls_get_increasing_indexes() -> None:
    tools = [*TOOLS, {"type": "function", "function": {"name": "get_time", "parameters": {}}}]
    out = ('<tool_call>\n{"name": "get_weather", "arguments": {"location": "A"}}\n</tool_call>\n'
           '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>')
    content, calls = feed(ToolCallParser(_tmpl("qwen2.5"), tools), out, 4)
    assert content == ""
    assert [(c["function"]["index"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        (0, "get_weather", {"location": "A"}), (1, "get_time", {"tz": "UTC"})]


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_plain_answer_passes_through_and_partial_tags_are_held_back(step: int) -> None:
    text = "No tools needed: 2 < 3 and <tool is not a tag. {braces} too."
    content, calls = feed(ToolCallParser(_tmpl("qwen2.5"), TOOLS), text, step)
    assert content == text and calls == []


def test_partial_tag_is_held_until_disambiguated() -> None:
    p = ToolCallParser(_tmpl("qwen2.5"), TOOLS)
    assert p.add("Sure <tool") == ("Sure ", [])
    assert p.add("box>") == ("<toolbox>", [])


def test_json_tag_llama31_parameters_key() -> None:
    out = '{"name": "get_weather", "parameters": {"location": "Berlin"}}'
    content, calls = feed(ToolCallParser(_tmpl("llama3.1"), TOOLS), out, 2)
    assert content == ""
    assert calls[0]["function"]["name"] == "get_weather"
    assert calls[0]["function"]["arguments"] == {"location": "Berlin"}


def test_json_tag_needs_output_to_start_with_json() -> None:
    text = 'Here is JSON: {"name": "get_weather", "parameters": {"location": "Berlin"}}'
    content, calls = feed(ToolCallParser(_tmpl("llama3.1"), TOOLS), text, 3)
    assert content == text and calls == []


def test_json_that_is_not_a_call_is_returned_as_content() -> None:
    text = '{"answer": 42}'
    content, calls = feed(ToolCallParser(_tmpl("llama3.1"), TOOLS), text, 1)
    assert content == text and calls == []


def test_name_keyed_object_and_string_arguments() -> None:
    out = '{"get_weather": {"location": "Rome"}}'
    _, calls = feed(ToolCallParser(None, TOOLS), out, 1000)
    assert calls[0]["function"]["arguments"] == {"location": "Rome"}
    out = '{"name": "get_weather", "arguments": "{\\"location\\": \\"Oslo\\"}"}'
    _, calls = feed(ToolCallParser(None, TOOLS), out, 1000)
    assert calls[0]["function"]["arguments"] == {"location": "Oslo"}


def test_incomplete_call_after_tag_is_not_leaked_as_content() -> None:
    content, calls = feed(ToolCallParser(_tmpl("qwen2.5"), TOOLS), '<tool_call>\n{"name": "get_wea', 2)
    assert content == "" and calls == []


def test_jinja_template_tag_is_guessed() -> None:
    jinja = "{% for m in messages %}{% if m.tool_calls %}<tool_call>{{ m.tool_calls|tojson }}</tool_call>{% endif %}{% endfor %}"
    p = ToolCallParser(jinja, TOOLS)
    assert p.tag == "<tool_call>"
    _, calls = feed(p, '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>', 7)
    assert calls[0]["function"]["name"] == "get_weather"
