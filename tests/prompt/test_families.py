"""Chat-template families: each family's Go template renders the same bytes as the Jinja
templates real GGUFs carry for it; anything else is kept as Jinja."""
from __future__ import annotations

import sys

import pytest

from runtime.errors import TemplateError
from runtime.prompt import execute_ollama, render_jinja
from runtime.prompt.families import (
    FAMILIES,
    PROBE_CONVERSATIONS,
    choose_template,
    is_jinja,
)

make_tiny_model = sys.modules["make_tiny_model"]

# The chat templates as model repositories ship them (tokenizer_config.json -> GGUF).
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}")
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}")
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
    "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")
# Qwen 2.5: ChatML with a default system prompt and a tools section
QWEN25 = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}"
    "{{- messages[0]['content'] }}{%- else %}{{- 'You are Qwen.' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n<tools>' }}{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}"
    "{%- endfor %}{{- '\\n</tools><|im_end|>\\n' }}{%- else %}{%- if messages[0]['role'] == "
    "'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}{%- endif %}{%- endif %}"
    "{%- for message in messages %}{%- if message.role == 'user' or (message.role == 'system' "
    "and not loop.first) or message.role == 'assistant' %}{{- '<|im_start|>' + message.role + "
    "'\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")

CASES = [("chatml", make_tiny_model.CHATML_TEMPLATE, ""), ("chatml", SMOLLM2, ""),
         ("llama3", LLAMA3, "<|eot_id|>"), ("mistral", MISTRAL, "</s>"),
         ("gemma", GEMMA, "<eos>"), ("phi3", PHI3, "<|endoftext|>")]

#: beyond the probes: long history, unicode, template-looking text, blank lines, empty content
CONVERSATIONS = [list(c) for c in PROBE_CONVERSATIONS] + [
    [{"role": "user", "content": "Grüße, 你好 🙂"}],
    [{"role": "user", "content": "print {{ .System }} and {% raw %}"}],
    [{"role": "system", "content": "Line one.\n\nLine three."},
     {"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "c"},
     {"role": "user", "content": "d"}, {"role": "assistant", "content": "e"},
     {"role": "user", "content": "f"}, {"role": "assistant", "content": "g"},
     {"role": "user", "content": "h"}],
    [{"role": "user", "content": ""}],
]


@pytest.mark.parametrize("family,jinja,eos", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_family_go_template_renders_the_jinja_bytes(family: str, jinja: str, eos: str) -> None:
    choice = choose_template(jinja, eos_token=eos)
    assert choice is not None and choice.family == family
    assert choice.stop == list(next(f for f in FAMILIES if f.name == family).stop)
    compared = 0
    for conv in CONVERSATIONS:
        try:
            want = render_jinja(jinja, messages=conv, eos_token=eos)
        except TemplateError:
            continue   # the Jinja refuses this conversation (roles must alternate, ...)
        assert execute_ollama(choice.template, messages=conv) == want, conv
        compared += 1
    assert compared >= 3


def test_default_system_prompt_is_carried_into_the_go_template() -> None:
    choice = choose_template(SMOLLM2)
    assert choice is not None and choice.family == "chatml"
    assert "You are a helpful AI assistant named SmolLM" in choice.template
    out = execute_ollama(choice.template, messages=[{"role": "user", "content": "hi"}])
    assert out.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_a_default_system_prompt_with_delimiters_stays_literal() -> None:
    jinja = SMOLLM2.replace("named SmolLM", "named {{ .Evil }}")
    choice = choose_template(jinja)
    assert choice is not None and choice.family == "chatml"
    out = execute_ollama(choice.template, messages=[{"role": "user", "content": "hi"}])
    assert "named {{ .Evil }}" in out


def test_a_template_that_formats_tools_is_kept_as_jinja() -> None:
    """No family Go template formats tools: mapping Qwen 2.5 would drop its tool prompts."""
    choice = choose_template(QWEN25, eos_token="<|im_end|>")
    assert choice is not None and choice.is_jinja and choice.template == QWEN25
    assert choice.stop == ["<|im_end|>"]


def test_family_markers_alone_are_not_enough() -> None:
    near = make_tiny_model.CHATML_TEMPLATE.replace("'<|im_end|>' + '\\n'", "'<|im_end|>\\n\\n'")
    assert near != make_tiny_model.CHATML_TEMPLATE
    choice = choose_template(near)
    assert choice is not None and choice.is_jinja


def test_is_jinja() -> None:
    assert is_jinja(SMOLLM2) and is_jinja("{%- for m in messages %}{{ m }}{% endfor %}")
    assert not is_jinja("{{ .Prompt }}") and not is_jinja(FAMILIES[0].template)
    assert not is_jinja("plain text with {% percent")
