"""The GGUF Jinja fallback: rendered as Hugging Face / llama.cpp do, sandboxed and bounded."""
from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from runtime.errors import TemplateError
from runtime.prompt import chat_prompt, generate_prompt, render_jinja
from runtime.prompt import jinja as J

QWEN_LIKE = (
    "{%- if tools %}{{- '<|im_start|>system\\n# Tools\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools><|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' and message.tool_calls %}"
    "{{- '<|im_start|>assistant' }}{%- for tc in message.tool_calls %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + tc.function.name + '\", \"arguments\": ' }}"
    "{{- tc.function.arguments | tojson }}{{- '}\\n</tool_call>' }}{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def test_tiny_gguf_chatml_template(tiny_gguf: Path) -> None:
    from runtime.models.gguf_info import read_gguf_info
    tmpl = read_gguf_info(tiny_gguf).chat_template
    assert tmpl is not None
    out = chat_prompt(template=None, jinja_template=tmpl, system="Be brief.",
                      messages=[{"role": "user", "content": "Hi"}])
    assert out == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                   "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_tools_and_tool_calls_in_hf_shape() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    msgs = [{"role": "user", "content": "Wetter in Köln?"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Köln"}}}]}]
    out = chat_prompt(template=None, jinja_template=QWEN_LIKE, messages=msgs, tools=tools)
    assert out == (
        '<|im_start|>system\n# Tools\n<tools>\n{"type": "function", "function": {"name": '
        '"get_weather", "parameters": {"type": "object"}}}\n</tools><|im_end|>\n'
        "<|im_start|>user\nWetter in Köln?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Köln"}}'
        "\n</tool_call><|im_end|>\n<|im_start|>assistant\n")


def test_bos_eos_generation_prompt_and_trim_blocks() -> None:
    t = ("{{ bos_token }}{% for m in messages %}\n  {% if m.role == 'user' %}\n"
         "U:{{ m.content }}{{ eos_token }}\n  {% endif %}\n{% endfor %}"
         "{% if add_generation_prompt %}A:{% endif %}")
    out = render_jinja(t, messages=[{"role": "user", "content": "x"}], bos_token="<s>",
                       eos_token="</s>")
    # trim_blocks drops the newline after a block tag, lstrip_blocks the indentation before
    assert out == "<s>U:x</s>\nA:"
    out = render_jinja(t, messages=[{"role": "user", "content": "x"}], add_generation_prompt=False)
    assert out == "U:x\n"


def test_raise_exception_becomes_template_error() -> None:
    t = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}"
    with pytest.raises(TemplateError, match="Conversation must start with user"):
        render_jinja(t, messages=[{"role": "assistant", "content": "x"}])


def test_strftime_now_and_loopcontrols() -> None:
    t = "{{ strftime_now('%Y-%m-%d') }}|{% for i in range(5) %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}"
    assert render_jinja(t, messages=[]) == datetime.date.today().isoformat() + "|01"


def test_generate_prompt_with_jinja() -> None:
    t = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}>{% endif %}"
    assert generate_prompt(template=None, jinja_template=t, prompt="p", system="s") == "[system]s[user]p>"


def test_syntax_error_has_line() -> None:
    with pytest.raises(TemplateError) as ei:
        render_jinja("ok\n{% for x in %}", messages=[])
    assert ei.value.pos == "2:1"


@pytest.mark.parametrize("t", [
    "{{ ''.__class__.__mro__ }}",
    "{{ messages.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{% set x = messages.append(1) %}",
])
def test_sandbox_blocks_escapes(t: str) -> None:
    with pytest.raises(TemplateError):
        render_jinja(t, messages=[])


@pytest.mark.parametrize("t", [
    "{{ 'x' * 100000000 }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(10) %}{% endfor %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{{ 2 ** 100000000 }}",
])
def test_bombs_are_stopped(t: str) -> None:
    with pytest.raises(TemplateError):           # a bomb the limits miss hangs: pytest-timeout
        render_jinja(t, messages=[])


def test_deadline_stops_a_long_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(J, "DEADLINE_S", 0.3)
    monkeypatch.setattr(J, "MAX_RANGE_TOTAL", 10**12)
    t = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateError, match="longer than"):
        render_jinja(t, messages=[])
    # the render thread is usable afterwards
    assert render_jinja("ok", messages=[]) == "ok"


def test_generation_block_renders_its_body() -> None:
    t = ("{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}A:{{ m.content }}"
         "{% endgeneration %}{% else %}U:{{ m.content }}{% endif %}{% endfor %}")
    msgs = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    assert render_jinja(t, messages=msgs) == "U:xA:y"


def test_malformed_tool_call_is_a_template_error() -> None:
    with pytest.raises(TemplateError):
        chat_prompt(template=None, jinja_template="{{ messages }}",
                    messages=[{"role": "assistant", "content": "", "tool_calls": ["x"]}])


@pytest.mark.parametrize("t", [
    "{{ '%999999999s'|format('x') }}",                 # folded at compile time by Jinja itself
    "{{ '%.999999999f'|format(1.0) }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ 'x'.center(999999999) }}",
    "{{ '{:999999999}'.format('x') }}",
    "{{ 'x'|center(999999999) }}",
    "{{ 'a\nb'|indent(999999999, true) }}",
])
def test_width_bombs_fail_with_a_clear_error(t: str) -> None:
    with pytest.raises(TemplateError, match="exceeds the size limit"):
        render_jinja(t, messages=[])


def test_filters_are_not_run_at_compile_time() -> None:
    code = J.compile_jinja("{{ 'abc'|upper }}").environment.compile("{{ 'abc'|upper }}", raw=True)
    assert "'ABC'" not in code and "ABC" not in code
    assert render_jinja("{{ 'abc'|upper }}", messages=[]) == "ABC"


def test_memory_bomb_no_check_foresees_is_stopped_in_the_worker() -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ~2 G characters from one str.replace call: only the worker's memory cap stops it
    t = "{{ ('x' * 10000000)|replace('', 'y' * 200) }}"
    with pytest.raises(TemplateError, match="memory"):
        render_jinja(t, messages=[])
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024           # this process never held the string
    assert render_jinja("ok", messages=[]) == "ok"


def test_a_dead_worker_is_replaced() -> None:
    from runtime.prompt import jinja_worker

    assert render_jinja("ok", messages=[]) == "ok"
    for child in jinja_worker._pool.idle:
        child.proc.kill()
        child.proc.wait()
    assert render_jinja("{{ 1 + 1 }}", messages=[]) == "2"


def test_big_numbers_that_size_nothing_are_fine() -> None:
    t = ("{{ '%d'|format(1700000000) }} {{ nothing_here|default(1700000000) }} "
         "{{ 'a-b'.split('-', 1700000000)|length }}")
    assert render_jinja(t, messages=[]) == "1700000000 1700000000 2"
