"""Map a GGUF ``tokenizer.chat_template`` (Jinja) to an Ollama Go template and stop tokens.

Hugging Face GGUFs carry the chat format as Jinja; Ollama models carry a Go template and a
``stop`` list. The common families are recognised by their special tokens and get an
equivalent Go template (written for llmcrate, rendering the same prompt as the Jinja for
system/user/assistant turns). Anything else keeps its Jinja text, which the runtime renders
with its sandboxed Jinja fallback (``runtime.prompt.render_jinja``).

Tool calling: the mapped templates cover plain chat; a Jinja template that also formats tools
(Qwen 2.5, Llama 3.1) is still mapped, so tool-aware prompts need an explicit TEMPLATE.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TemplateChoice", "choose_template", "FAMILIES"]

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
class _Family:
    name: str
    markers: tuple[str, ...]   # all must appear in the Jinja text
    template: str
    stop: tuple[str, ...]


# Order matters: the first family whose markers all appear wins (Phi-3 before ChatML-likes).
FAMILIES: tuple[_Family, ...] = (
    _Family("llama3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), _LLAMA3,
            ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
    _Family("chatml", ("<|im_start|>", "<|im_end|>"), _CHATML, ("<|im_start|>", "<|im_end|>")),
    _Family("gemma", ("<start_of_turn>", "<end_of_turn>"), _GEMMA,
            ("<start_of_turn>", "<end_of_turn>")),
    _Family("phi3", ("<|user|>", "<|assistant|>", "<|end|>"), _PHI3,
            ("<|end|>", "<|user|>", "<|assistant|>")),
    _Family("mistral", ("[INST]", "[/INST]"), _MISTRAL, ("[INST]", "[/INST]")),
)


@dataclass(frozen=True)
class TemplateChoice:
    """The template layer text and the stop tokens for a pulled GGUF."""

    template: str
    family: str | None = None          # None: the Jinja text was kept as it is
    stop: list[str] = field(default_factory=list)

    @property
    def is_jinja(self) -> bool:
        return self.family is None


def choose_template(jinja: str | None, *, eos_token: str | None = None,
                    eot_token: str | None = None) -> TemplateChoice | None:
    """Pick the Go template for ``jinja`` or keep the Jinja; None when there is no template.

    Stop tokens come from the family, else from the GGUF's end-of-turn / end-of-sequence tokens.
    """
    if not jinja or not jinja.strip():
        return None
    for fam in FAMILIES:
        if all(m in jinja for m in fam.markers):
            return TemplateChoice(template=fam.template, family=fam.name, stop=list(fam.stop))
    stop = [t for t in (eot_token, eos_token) if t]
    return TemplateChoice(template=jinja, family=None, stop=list(dict.fromkeys(stop)))
