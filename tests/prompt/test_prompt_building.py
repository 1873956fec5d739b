"""Ollama's prompt building: system handling, collate, legacy path, truncation, generate.

Expectations follow ollama/ollama server/routes.go (ChatHandler, GenerateHandler),
server/prompt.go (chatPrompt) and template/template.go (Parse, Execute, collate).
"""
from __future__ import annotations

import pytest

from runtime.errors import TemplateError
from runtime.prompt import chat_prompt, filter_think_tags, generate_prompt

MSGS_T = "{{ range .Messages }}[{{ .Role }}:{{ .Content }}]{{ end }}|{{ .System }}"
LEGACY_T = "{{ if .System }}S:{{ .System }};{{ end }}U:{{ .Prompt }};A:{{ .Response }};END;"


def chat(template: str | None, messages: list[dict], **kw: object) -> str:
    return chat_prompt(template=template, jinja_template=None, messages=messages, **kw)


def test_modelfile_system_is_prepended_when_request_has_none() -> None:
    out = chat(MSGS_T, [{"role": "user", "content": "hi"}], system="be nice")
    assert out == "[system:be nice][user:hi]|be nice"


def test_request_system_replaces_modelfile_system() -> None:
    out = chat(MSGS_T, [{"role": "system", "content": "mine"}, {"role": "user", "content": "hi"}],
               system="be nice")
    assert out == "[system:mine][user:hi]|mine"


def test_collate_merges_same_role_and_joins_system() -> None:
    msgs = [{"role": "system", "content": "s1"}, {"role": "system", "content": "s2"},
            {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
            {"role": "tool", "content": "t1"}, {"role": "tool", "content": "t2"}]
    assert chat(MSGS_T, msgs) == "[system:s1\n\ns2][user:a\n\nb][tool:t1][tool:t2]|s1\n\ns2"


def test_roles_are_lower_cased_like_ollama() -> None:
    assert chat(MSGS_T, [{"role": "USER", "content": "x"}]) == "[user:x]|"


def test_legacy_path_renders_turn_by_turn_and_cuts_after_response() -> None:
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}]
    # earlier turns render whole; the last stops right after {{ .Response }}
    assert chat(LEGACY_T, msgs) == "S:sys;U:u1;A:a1;END;U:u2;A:"


def test_legacy_template_without_response_gets_it_appended() -> None:
    # template.Parse appends {{ .Response }} when neither .Messages nor .Response is used
    msgs = [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "u2"}]
    assert chat("<{{ .Prompt }}>", msgs) == "<u1>a1<u2>"


def test_no_template_uses_ollama_default_prompt_template() -> None:
    msgs = [{"role": "system", "content": "dropped"}, {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}]
    assert chat(None, msgs) == "u1a1u2"
    assert generate_prompt(template=None, jinja_template=None, prompt="just this") == "just this"


def test_tools_and_think_values_reach_the_template() -> None:
    t = ("{{ range .Tools }}{{ .Function.Name }}({{ range $k, $v := .Function.Parameters.Properties }}"
         "{{ $k }}:{{ $v.Type }} {{ end }}){{ end }}|{{ .Think }}|{{ .ThinkLevel }}|{{ .IsThinkSet }}"
         "{{ range .Messages }}{{ range .ToolCalls }}|{{ .Function.Name }}{{ .Function.Arguments }}{{ end }}{{ end }}")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": ["string", "null"]}}}}}]
    msgs = [{"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "f", "arguments": {"b": 3, "a": "<x>"}}}]}]
    out = chat(t, msgs, tools=tools, think="high")
    assert out == 'f(a:[string null] b:integer )|true|high|true|f{"a":"\\u003cx\\u003e","b":3}'
    assert chat(t, msgs, tools=tools, think=True).endswith("|true|medium|true|f" + '{"a":"\\u003cx\\u003e","b":3}')
    assert "|false||false|" in chat(t, msgs, tools=tools)


def test_tool_string_forms_are_json() -> None:
    tools = [{"type": "function", "function": {"name": "g", "description": "d",
                                               "parameters": {"type": "object", "properties": {}}}}]
    t = "{{ .Tools }}|{{ range .Tools }}{{ . }}|{{ .Function }}|{{ .Function.Parameters }}{{ end }}"
    out = chat(t + "{{ .Messages }}", [{"role": "user", "content": "x"}], tools=tools)
    fn = '{"name":"g","description":"d","parameters":{"type":"object","properties":{}}}'
    assert out.startswith(f'[{{"type":"function","function":{fn}}}]|'
                          f'{{"type":"function","function":{fn}}}|{fn}|'
                          '{"type":"object","properties":{}}')


def test_images_become_tags() -> None:
    msgs = [{"role": "user", "content": "look", "images": ["aGk="]},
            {"role": "user", "content": "and [img] here", "images": ["aGk="]}]
    assert chat(MSGS_T, msgs) == "[user:[img-0]look\n\nand [img-1] here]|"


def test_image_tags_count_the_whole_conversation_when_truncated() -> None:
    """Tag N names the N-th image of all the messages, even after older ones were dropped, so
    the runner maps tags to the request's images without knowing where truncation cut."""
    msgs = [{"role": "user", "content": "old " * 20, "images": ["aGk=", "aGk="]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "new", "images": ["aGk="]}]
    out = chat(MSGS_T, msgs, count_tokens=count_chars, num_ctx=40)
    assert out == "[assistant:ok][user:[img-2]new]|"


def test_images_count_in_the_context_budget() -> None:
    msgs = [{"role": "user", "content": "first", "images": ["aGk="]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second"}]
    whole = chat(MSGS_T, msgs, count_tokens=count_chars, num_ctx=100)
    assert "[img-0]first" in whole
    # the same window, but each image costs 80 tokens: the first turn no longer fits
    assert chat(MSGS_T, msgs, count_tokens=count_chars, num_ctx=100,
                image_tokens=80) == "[assistant:ok][user:second]|"


def count_chars(s: str) -> int:
    return len(s)


def test_truncation_drops_oldest_messages_but_keeps_system_and_last() -> None:
    msgs = [{"role": "system", "content": "S"}]
    for i in range(10):
        msgs += [{"role": "user", "content": f"user message {i}"},
                 {"role": "assistant", "content": f"assistant reply {i}"}]
    msgs.append({"role": "user", "content": "final"})
    full = chat(MSGS_T, msgs)
    out = chat(MSGS_T, msgs, count_tokens=count_chars, num_ctx=120)
    assert len(out) <= 120 < len(full)
    assert out.startswith("[system:S]") and "[user:final]" in out
    assert "message 0" not in out and "reply 9" in out
    # a window that cannot fit keeps at least the last message (and the system)
    tiny = chat(MSGS_T, msgs, count_tokens=count_chars, num_ctx=1)
    assert tiny == "[system:S][user:final]|S"


def test_truncation_never_orphans_a_tool_result() -> None:
    msgs = [{"role": "user", "content": "x" * 50},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
            {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"}]
    out = chat(MSGS_T, msgs, count_tokens=count_chars, num_ctx=10)
    assert out == "[assistant:][tool:r1][tool:r2]|"


def test_generate_prompt_builds_system_and_user_messages() -> None:
    out = generate_prompt(template=MSGS_T, jinja_template=None, prompt="p", system="s")
    assert out == "[system:s][user:p]|s"
    assert generate_prompt(template=LEGACY_T, jinja_template=None, prompt="p") == "U:p;A:"


def test_generate_suffix_sets_prompt_and_suffix_only() -> None:
    t = "{{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{ else }}{{ .Prompt }}{{ end }}"
    assert generate_prompt(template=t, jinja_template=None, prompt="def add(",
                           suffix="return x") == "<PRE> def add( <SUF>return x <MID>"
    assert generate_prompt(template=t, jinja_template=None, prompt="hello") == "hello"


def test_generate_with_jinja_rejects_suffix() -> None:
    with pytest.raises(TemplateError):
        generate_prompt(template=None, jinja_template="{{ messages }}", prompt="a", suffix="b")


@pytest.mark.parametrize("messages", [
    "not a list", [{"content": "no role"}], [{"role": "user", "content": 5}], ["str"],
])
def test_bad_messages_are_template_errors(messages: object) -> None:
    with pytest.raises(TemplateError):
        chat(MSGS_T, messages)  # type: ignore[arg-type]


def test_openai_style_string_arguments_are_parsed() -> None:
    t = "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Arguments.city }}{{ end }}{{ end }}"
    msgs = [{"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": "f", "arguments": '{"city": "Oslo"}'}}]}]
    assert chat(t, msgs) == "Oslo"


def test_filter_think_tags_strips_earlier_reasoning_only() -> None:
    msgs = [{"role": "user", "content": "q1"},
            {"role": "assistant", "content": "  <think>pondering</think>\n\nanswer 1"},
            {"role": "assistant", "content": "no tags here"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "<think>kept: after the last user turn</think>x"}]
    out = filter_think_tags(msgs)
    assert [m["content"] for m in out] == [
        "q1", "answer 1", "no tags here", "q2", "<think>kept: after the last user turn</think>x"]
    assert msgs[1]["content"].startswith("  <think>")   # the input is not modified


def test_to_typescript_type_and_property_fields() -> None:
    t = ("{{ range .Tools }}{{ range $name, $p := .Function.Parameters.Properties }}"
         "{{ $name }}: {{ toTypeScriptType $p }}{{ if $p.Enum }} {{ $p.Enum }}{{ end }}; {{ end }}{{ end }}"
         "{{ toTypeScriptType .System }}")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "a": {"type": "integer"}, "b": {"type": ["string", "null"]},
        "c": {"anyOf": [{"type": "array"}, {"type": "object"}]}, "d": {"type": "string", "enum": ["x", "y"]},
        "e": {}}}}}]
    out = chat(t + "{{ .Messages }}", [{"role": "user", "content": "q"}], tools=tools, system="s")
    assert out.startswith('a: number; b: string | null; c: any[] | Record<string, any>; '
                          'd: string [x y]; e: any; any')


@pytest.mark.parametrize("messages,tools", [
    ([{"role": "user", "content": "x", "tool_calls": "nope"}], None),
    ([{"role": "assistant", "content": "", "tool_calls": ["nope"]}], None),
    ([{"role": "assistant", "content": "", "tool_calls": [{"function": "f"}]}], None),
    ([{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": [1]}}]}], None),
    ([{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}]}], None),
    ([{"role": "user", "content": "x", "images": "abc"}], None),
    ([{"role": "user", "content": "x"}], "tools"),
    ([{"role": "user", "content": "x"}], [{"type": "function", "function": "f"}]),
    ([{"role": "user", "content": "x"}], [{"function": {"name": "f", "parameters": {"properties": []}}}]),
    ([{"role": "user", "content": "x"}], [{"function": {"name": "f", "parameters": {"properties": {"a": 1}}}}]),
])
def test_malformed_tools_and_calls_are_template_errors(messages: list, tools: object) -> None:
    t = "{{ range .Messages }}{{ .Content }}{{ end }}{{ .Tools }}"
    with pytest.raises(TemplateError):
        chat(t, messages, tools=tools)  # type: ignore[arg-type]
