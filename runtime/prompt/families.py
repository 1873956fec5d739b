"""A GGUF's Jinja ``tokenizer.chat_template`` as an equivalent Ollama Go template, when it is one
of the common chat families; and whether a template text is Jinja or Go.

Hugging Face GGUFs carry their chat format as Jinja; Ollama models carry a Go template and a
``stop`` list (Ollama's ``create`` detects the family of the GGUF's template and stores its Go
template). Here a family is *proposed* by its special tokens and *accepted* only when its Go
template renders byte for byte what the Jinja renders on a set of probe conversations (system
or not, one and several turns; tools when the Jinja reads them). A ChatML template that opens
with a default system prompt when the conversation has none (SmolLM2, Qwen 2.5) gets a Go
template carrying that default. Anything that does not verify keeps its Jinja text, which the
runtime renders with its sandboxed Jinja (:mod:`.jinja`).

The Go templates are written for llmcrate; none of them formats tools, so a Jinja template
that reads ``tools`` is kept as Jinja (its tool prompts would otherwise be lost).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from runtime.errors import TemplateError

__all__ = [
    "FAMILIES",
    "PROBE_CONVERSATIONS",
    "Family",
    "TemplateChoice",
    "choose_template",
    "is_jinja",
]

logger = logging.getLogger(__name__)

# Each template renders .Messages; the last assistant header is left open for the answer.
_CHATML = """\
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
<|im_start|>{{ .Role }}
{{ .Content }}{{ if or (ne .Role "assistant") (not $last) }}<|im_end|>
{{ end }}
{{- if and $last (ne .Role "assistant") }}<|im_start|>assistant
{{ end }}
{{- end }}"""

# ChatML whose Jinja opens with a default system turn when the first message is not a system one
_CHATML_DEFAULT_SYSTEM = """\
{{- range $i, $_ := .Messages }}
{{- if and (eq $i 0) (ne .Role "system") }}<|im_start|>system
@DEFAULT@<|im_end|>
{{ end }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
<|im_start|>{{ .Role }}
{{ .Content }}{{ if or (ne .Role "assistant") (not $last) }}<|im_end|>
{{ end }}
{{- if and $last (ne .Role "assistant") }}<|im_start|>assistant
{{ end }}
{{- end }}"""

_LLAMA3 = """\
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}{{ if or (ne .Role "assistant") (not $last) }}<|eot_id|>{{ end }}
{{- if and $last (ne .Role "assistant") }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}"""

# Mistral: the system prompt goes in front of the last user turn, as Mistral's own template does.
_MISTRAL = """\
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}[INST] {{ if and $.System $last }}{{ $.System }}

{{ end }}{{ .Content }} [/INST]
{{- else if eq .Role "assistant" }}{{ .Content }}{{ if not $last }}</s>{{ end }}
{{- end }}
{{- end }}"""

# Gemma has no system role: system text opens the first user turn.
_GEMMA = """\
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<start_of_turn>user
{{ if and $.System (eq $i 1) }}{{ $.System }}

{{ end }}{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}
{{- end }}
{{- end }}"""

_PHI3 = """\
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
<|{{ .Role }}|>
{{ .Content }}{{ if or (ne .Role "assistant") (not $last) }}<|end|>
{{ end }}
{{- if and $last (ne .Role "assistant") }}<|assistant|>
{{ end }}
{{- end }}"""


@dataclass(frozen=True)
class Family:
    name: str
    markers: tuple[str, ...]   # all must appear in the Jinja text
    template: str
    stop: tuple[str, ...]


# Order matters: the first family whose markers all appear and whose template verifies wins.
FAMILIES: tuple[Family, ...] = (
    Family("llama3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), _LLAMA3,
           ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
    Family("chatml", ("<|im_start|>", "<|im_end|>"), _CHATML, ("<|im_start|>", "<|im_end|>")),
    Family("gemma", ("<start_of_turn>", "<end_of_turn>"), _GEMMA,
           ("<start_of_turn>", "<end_of_turn>")),
    Family("phi3", ("<|user|>", "<|assistant|>", "<|end|>"), _PHI3,
           ("<|end|>", "<|user|>", "<|assistant|>")),
    Family("mistral", ("[INST]", "[/INST]"), _MISTRAL, ("[INST]", "[/INST]")),
)

_S = {"role": "system", "content": "You answer in one short sentence."}
_U1 = {"role": "user", "content": "Hi there!"}
_A1 = {"role": "assistant", "content": "Hello! How can I help?"}
_U2 = {"role": "user", "content": "What is 2+2?\nReply with a number."}
_A2 = {"role": "assistant", "content": "4"}
_U3 = {"role": "user", "content": "And 3+3?"}

#: conversations on which a family's Go template must render the Jinja's bytes
PROBE_CONVERSATIONS: tuple[tuple[dict[str, str], ...], ...] = (
    (_U1,),
    (_S, _U1),
    (_U1, _A1, _U2),
    (_S, _U1, _A1, _U2),
    (_S, _U1, _A1, _U2, _A2, _U3),
)

#: tools offered in the probes when a Jinja template reads ``tools``
PROBE_TOOLS: list[dict[str, Any]] = [{
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather for a city",
                 "parameters": {"type": "object", "required": ["city"],
                                "properties": {"city": {"type": "string",
                                                        "description": "City name"}}}},
}]


@dataclass(frozen=True)
class TemplateChoice:
    """The template text for a GGUF's chat template, and the stop tokens to store with it."""

    template: str
    family: str | None = None          # None: the Jinja text was kept as it is
    stop: list[str] = field(default_factory=list)

    @property
    def is_jinja(self) -> bool:
        return self.family is None


_JINJA_STATEMENT = re.compile(
    r"\{%[-+]?\s*(if|for|set|macro|raw|generation|elif|else|endif|endfor)\b")


def is_jinja(text: str) -> bool:
    """True when a template text is Jinja (a GGUF chat_template), False for Go template text.

    Jinja statements (``{% for %}``, ``{% if %}``, ...) never occur in Ollama templates, and
    every chat template loops over its messages with one.
    """
    return bool(_JINJA_STATEMENT.search(text))


def _go_text(text: str) -> str:
    """``text`` as a piece of a Go template: literal, unless it holds delimiters."""
    if "{{" not in text and "}}" not in text:
        return text
    import json

    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"


_DEFAULT_SYSTEM = re.compile(r"^<\|im_start\|>system\n(.*)<\|im_end\|>\n$", re.S)


def _candidates(fam: Family, render: Callable[[list[dict[str, Any]]], str]) -> list[str]:
    """Go templates to try for a family: its own; for ChatML also one with the default system
    prompt that the Jinja puts in when the conversation has none."""
    out = [fam.template]
    if fam.name == "chatml":
        try:
            alone = render([_U1])
        except TemplateError:
            return out
        plain = f"<|im_start|>user\n{_U1['content']}<|im_end|>\n<|im_start|>assistant\n"
        if alone.endswith(plain):
            m = _DEFAULT_SYSTEM.match(alone[: len(alone) - len(plain)])
            if m:
                out.append(_CHATML_DEFAULT_SYSTEM.replace("@DEFAULT@", _go_text(m.group(1))))
    return out


def renders_alike(go_template: str, jinja: str, *, eos_token: str = "",
                  tools: bool = False) -> bool:
    """True when ``go_template`` renders every probe conversation as ``jinja`` does (with the
    generation prompt; conversations the Jinja rejects are not counted, the first must pass)."""
    from runtime.prompt.jinja import render_jinja
    from runtime.prompt.ollama import execute_ollama

    for n, conv in enumerate(PROBE_CONVERSATIONS):
        msgs = [dict(m) for m in conv]
        for offered in ([None, PROBE_TOOLS] if tools else [None]):
            try:
                want = render_jinja(jinja, messages=msgs, tools=offered,
                                    add_generation_prompt=True, eos_token=eos_token)
            except TemplateError:
                if n == 0:
                    return False
                continue
            try:
                got = execute_ollama(go_template, messages=msgs, tools=offered)
            except TemplateError:
                return False
            if got != want:
                return False
    return True


def choose_template(jinja: str | None, *, eos_token: str | None = None,
                    eot_token: str | None = None) -> TemplateChoice | None:
    """The Go template of ``jinja``'s family, verified on the probe conversations, or the Jinja
    kept as it is; None when there is no template.

    Stop tokens come from the family, else from the GGUF's end-of-turn / end-of-sequence tokens.
    """
    if not jinja or not jinja.strip():
        return None
    from runtime.prompt.jinja import render_jinja

    def render(msgs: list[dict[str, Any]]) -> str:
        return render_jinja(jinja, messages=msgs, add_generation_prompt=True,
                            eos_token=eos_token or "")

    reads_tools = "tools" in jinja
    for fam in FAMILIES:
        if not all(m in jinja for m in fam.markers):
            continue
        for candidate in _candidates(fam, render):
            if renders_alike(candidate, jinja, eos_token=eos_token or "", tools=reads_tools):
                return TemplateChoice(template=candidate, family=fam.name, stop=list(fam.stop))
        logger.debug("chat template looks like %s but renders differently; kept as Jinja",
                     fam.name)
    stop = [t for t in (eot_token, eos_token) if t]
    return TemplateChoice(template=jinja, family=None, stop=list(dict.fromkeys(stop)))
