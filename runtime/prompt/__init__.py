"""Prompt templates: Ollama's Go templates, the GGUF Jinja fallback, and prompt building.

    lexer.py      Go text/template source -> tokens (trim markers, comments, positions)
    parser.py     tokens -> AST (nodes.py), checked like text/template/parse
    executor.py   AST -> closures; Go semantics; bounded depth / steps / output
    funcs.py      Go's builtin functions + Ollama's json, currentDate, toTypeScriptType
    gofmt.py      Go's fmt %v / printf / encoding/json forms of values
    values.py     Ollama's template values (.Messages, .Tools, ...) from /api/chat JSON
    ollama.py     chat_prompt / generate_prompt: Ollama's prompt building
    jinja.py      sandboxed, bounded Jinja rendering of tokenizer.chat_template
    toolcalls.py  ToolCallParser: tool calls out of model output

With no template at all (neither Go nor Jinja), Ollama's default template ``{{ .Prompt }}``
is used: user and assistant texts are concatenated turn by turn and system text is dropped.
"""
from __future__ import annotations

from runtime.prompt.gotemplate import GoTemplate
from runtime.prompt.jinja import render_jinja
from runtime.prompt.ollama import (
           DEFAULT_TEMPLATE,
           chat_prompt,
           execute_ollama,
           filter_think_tags,
           generate_prompt,
)
from runtime.prompt.toolcalls import ToolCallParser, template_tool_tag

__all__ = ["DEFAULT_TEMPLATE", "GoTemplate", "ToolCallParser", "chat_prompt", "execute_ollama",
           "filter_think_tags", "generate_prompt", "render_jinja", "template_tool_tag"]
