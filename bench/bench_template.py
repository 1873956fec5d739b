#!/usr/bin/env python3
"""Go template vs jinja2: µs per render of a 50-message chat with tools.

    .venv/bin/python bench/bench_template.py [--repeat 15] [--number 200]

Renders the same conversation (system prompt, 2 tools, 50 messages with tool calls and tool
results) through:

- ``chat_prompt`` with Qwen 2.5's Go template (Ollama's values, collate, execution),
- ``GoTemplate.execute`` alone on prebuilt values (the interpreter only),
- plain jinja2 rendering an equivalent Jinja template (same output bytes, checked),
- llmcrate's sandboxed, bounded Jinja fallback on that Jinja template.

Prints one table (min and median of ``--repeat`` rounds of ``--number`` renders; the cases
take turns within each round).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jinja2  # noqa: E402

from runtime.prompt import GoTemplate, chat_prompt, render_jinja  # noqa: E402
from runtime.prompt.ollama import _collate, _think_values  # noqa: E402
from runtime.prompt.values import to_template_message, to_template_tools  # noqa: E402

GO_TEMPLATE = (ROOT / "tests" / "prompt" / "data" / "templates" / "qwen2.5.gotmpl").read_text()

# The same prompt as qwen2.5.gotmpl's .Messages branch, in Jinja (Go's "{{-" is Jinja's "{%-"
# / "{{-"; no trim_blocks, so newlines after tags stay as in Go).
JINJA_TEMPLATE = """\
{%- set system = messages | selectattr("role", "equalto", "system") | map(attribute="content") | join("\\n\\n") %}
{%- if system or tools %}<|im_start|>system
{%- if system %}
{{ system }}
{%- endif %}
{%- if tools %}

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{%- for tool in tools %}
{"type": "function", "function": {{ tool.function | tojson }}}
{%- endfor %}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>
{%- endif %}<|im_end|>
{% endif %}
{%- for m in messages %}
{%- set last = loop.last -%}
{%- if m.role == "user" %}<|im_start|>user
{{ m.content }}<|im_end|>
{% elif m.role == "assistant" %}<|im_start|>assistant
{% if m.content %}{{ m.content }}
{%- elif m.tool_calls %}<tool_call>
{% for tc in m.tool_calls %}{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}
{% endfor %}</tool_call>
{%- endif %}{% if not last %}<|im_end|>
{% endif %}
{%- elif m.role == "tool" %}<|im_start|>user
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% endif %}
{%- if m.role != "assistant" and last %}<|im_start|>assistant
{% endif %}
{%- endfor %}"""

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get current weather information for a location",
        "parameters": {"type": "object", "required": ["location"], "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "unit": {"type": "string", "description": "The unit of temperature to use",
                     "enum": ["celsius", "fahrenheit"]}}}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web",
        "parameters": {"type": "object", "required": ["query"], "properties": {
            "query": {"type": "string", "description": "What to look for"}}}}},
]


def conversation(n: int = 50) -> list[dict]:
    msgs: list[dict] = [{"role": "system", "content": "You are a helpful assistant."}]
    i = 0
    while len(msgs) < n - 1:
        msgs.append({"role": "user", "content": f"Question {i}: what is the weather in city {i}?"})
        if i % 3 == 0:
            msgs.append({"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"location": f"City {i}", "unit": "celsius"}}}]})
            msgs.append({"role": "tool", "content": json.dumps({"temperature": 20 + i % 10}),
                         "tool_name": "get_weather"})
            msgs.append({"role": "assistant", "content": f"It is {20 + i % 10} degrees in city {i}."})
        else:
            msgs.append({"role": "assistant", "content": f"Answer {i}: " + "lorem ipsum " * 8})
        i += 1
    msgs = msgs[:n - 1]
    if msgs[-1]["role"] == "user":
        msgs.append({"role": "assistant", "content": "Anything else?"})
    msgs.append({"role": "user", "content": "Thanks, that is all."})
    return msgs[:n]


def timeit(cases: list[tuple[str, Callable[[], str]]], repeat: int,
           number: int) -> dict[str, list[float]]:
    """µs per render; the cases take turns so a busy machine slows them alike."""
    runs: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _ in range(repeat):
        for name, fn in cases:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            runs[name].append((time.perf_counter() - t0) / number * 1e6)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--number", type=int, default=200)
    args = ap.parse_args()

    msgs = conversation(50)
    assert len(msgs) == 50

    go_out = chat_prompt(template=GO_TEMPLATE, jinja_template=None, messages=msgs, tools=TOOLS)
    env = jinja2.Environment()
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":")}   # Go's compact encoding/json
    jt = env.from_string(JINJA_TEMPLATE)

    def plain_jinja() -> str:
        return jt.render(messages=msgs, tools=TOOLS, add_generation_prompt=True)

    assert plain_jinja() == go_out, "the Jinja template must produce the same bytes"

    tmpl = GoTemplate.parse(GO_TEMPLATE)
    system, collated = _collate(msgs)
    values = {"System": system, "Messages": [to_template_message(m) for m in collated],
              "Tools": to_template_tools(TOOLS), "Response": "", **_think_values(None)}
    assert tmpl.execute(values) == go_out

    cases: list[tuple[str, Callable[[], str]]] = [
        ("Go template: chat_prompt (values + render)",
         lambda: chat_prompt(template=GO_TEMPLATE, jinja_template=None, messages=msgs, tools=TOOLS)),
        ("Go template: GoTemplate.execute only", lambda: tmpl.execute(values)),
        ("jinja2 (plain Environment, precompiled)", plain_jinja),
        ("Jinja fallback: render_jinja (sandboxed, bounded)",
         lambda: render_jinja(JINJA_TEMPLATE, messages=msgs, tools=TOOLS)),
    ]
    print(f"# 50-message chat with 2 tools -> {len(go_out)} chars of prompt")
    print(f"# python {platform.python_version()}, jinja2 {jinja2.__version__}, "
          f"{platform.machine()}, {args.repeat}x{args.number} renders")
    results = {}
    for name, runs in timeit(cases, args.repeat, args.number).items():
        results[name] = min(runs)
        print(f"{name:52s} min {min(runs):9.1f} µs   median {statistics.median(runs):9.1f} µs")
    base = results["jinja2 (plain Environment, precompiled)"]
    go = results["Go template: chat_prompt (values + render)"]
    print(f"ratio chat_prompt / jinja2: {go / base:.2f}x   "
          f"execute-only / jinja2: {results['Go template: GoTemplate.execute only'] / base:.2f}x")


if __name__ == "__main__":
    main()
