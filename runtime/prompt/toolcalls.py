"""Tool calls out of model output, the way Ollama's ``tools`` parser finds them.

The tool-call tag comes from the template: the first text inside the template's
``{{ if .ToolCalls }}`` block, trimmed and cut before any ``{`` (``<tool_call>`` for Qwen,
``[TOOL_CALLS] [`` for Mistral); with none, the tag is ``{``: the output must *start* with a
JSON object to be a tool call. For Jinja-only models the tag is guessed from the template text.

Streaming: :meth:`ToolCallParser.add` returns text that is surely content right away, holds
back anything that might be the start of the tag, and once the tag has been seen returns each
complete call (a JSON object holding ``name`` plus ``arguments``/``parameters``, or
``{"<tool name>": {...}}``, for one of the request's tools) as soon as its braces close.
"""
from __future__ import annotations

import json
from typing import Any

from runtime.prompt import nodes as N
from runtime.prompt.gotemplate import GoTemplate

_LOOKING, _CALLING, _DONE = 0, 1, 2


def template_tool_tag(template: str | None) -> str:
    """The tool-call tag a template uses ("" when it shows none)."""
    if not template:
        return ""
    try:
        tmpl = GoTemplate.parse(template)
    except Exception:  # noqa: BLE001 (not a Go template: try the Jinja tag)
        return _jinja_tool_tag(template)
    node = _find_tool_calls_if(tmpl.root.body)
    if node is None:
        return ""
    text = _find_text(node.body)
    if text is None:
        return ""
    tag = text.strip().replace("\r\n", "\n")
    return tag.split("{")[0]


def _jinja_tool_tag(text: str) -> str:
    for tag in ("<tool_call>", "[TOOL_CALLS]", "<|tool_call_start|>", "<|python_tag|>",
                "<function_calls>", "<tool_calls>"):
        if tag in text:
            return tag
    return ""


def _mentions_tool_calls(p: N.Pipeline) -> bool:
    return any(isinstance(a, N.FieldRef) and "ToolCalls" in a.idents
               for c in p.cmds for a in c.args)


def _find_tool_calls_if(nodes: list[N.Node]) -> N.If | None:
    for n in nodes:
        if isinstance(n, N.If):
            if _mentions_tool_calls(n.pipe):
                return n
            for sub in (n.body, n.else_body or []):
                r = _find_tool_calls_if(sub)
                if r is not None:
                    return r
        elif isinstance(n, (N.Range, N.With)):
            for sub in (n.body, n.else_body or []):
                r = _find_tool_calls_if(sub)
                if r is not None:
                    return r
    return None


def _find_text(nodes: list[N.Node]) -> str | None:
    for n in nodes:
        if isinstance(n, N.Text):
            return n.text
        if isinstance(n, (N.If, N.Range, N.With)):
            r = _find_text(n.body)
            if r is None and n.else_body is not None:
                r = _find_text(n.else_body)
            return r
        if isinstance(n, N.Action):
            return None
    return None


class ToolCallParser:
    """Incremental tool-call extraction for one response.

    Args:
        template: the model's Go template (or its Jinja chat template, or None).
        tools: the request's tools (/api/chat shape); only their names are matched.
    """

    def __init__(self, template: str | None, tools: list[dict[str, Any]]) -> None:
        self.tag = template_tool_tag(template) or "{"
        self.names = [str((t.get("function") or {}).get("name") or "") for t in tools or []]
        self.names = [n for n in self.names if n]
        self.state = _LOOKING
        self.buffer = ""
        self.n = 0

    def add(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """Feed generated text; returns (content to emit now, tool calls completed now)."""
        if self.state == _DONE:
            return text, []
        self.buffer += text
        content = ""
        if self.state == _LOOKING:
            i, found = self._find_tag()
            if i == -1:
                content, self.buffer = self.buffer, ""
            else:
                content, self.buffer = self.buffer[:i], self.buffer[i:]
            # with a bare { or [ tag, only output that starts with it can be a tool call
            if self.tag in ("{", "[") and content.strip():
                self.state = _DONE
                out, self.buffer = content + self.buffer, ""
                return out, []
            if not found:
                return content, []
            self.state = _CALLING
        calls = []
        while True:
            call = self._next_call()
            if call is None:
                break
            calls.append(call)
        if self._closed():
            self.state = _DONE
            content, self.buffer = content + self.buffer, ""
        return content, calls

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """End of output: returns what is left to emit as content (nothing once a call was
        found or while inside a tagged tool-call block) and no further calls."""
        rest, self.buffer = self.buffer, ""
        if self.n > 0:
            return "", []
        if self.state == _LOOKING or self.tag in ("{", "["):
            return rest, []
        return "", []

    # -- internals ----------------------------------------------------------------------
    def _find_tag(self) -> tuple[int, bool]:
        i = self.buffer.find(self.tag)
        if i >= 0:
            return i, True
        for k in range(min(len(self.buffer), len(self.tag)), 0, -1):
            if self.buffer.endswith(self.tag[:k]):
                return len(self.buffer) - k, False
        return -1, False

    def _find_name(self) -> tuple[str | None, int]:
        buf = self.buffer
        if not buf or not self.names:
            return None, 0
        longest = max(len(n) for n in self.names)
        # a buffer ending in a prefix of a longer name must wait ("get" vs "get_weather")
        for k in range(1, min(len(buf), longest) + 1):
            tail = buf[-k:]
            if any(len(tail) < len(n) and n.startswith(tail) for n in self.names):
                return None, 0
        best: str | None = None
        start = -1
        for n in self.names:
            pos = buf.find(n)
            if pos < 0:
                continue
            if best is not None and (pos > start or (pos == start and len(n) <= len(best))):
                continue
            best, start = n, pos
        return (best, start + len(best)) if best is not None else (None, 0)

    def _next_call(self) -> dict[str, Any] | None:
        name, end = self._find_name()
        if name is None:
            return None
        found = _find_arguments(name, self.buffer)
        if found is None:
            return None
        args, i = found
        end = max(end, i)
        call = {"function": {"index": self.n, "name": name, "arguments": args}}
        self.n += 1
        self.buffer = self.buffer[end:]
        return call

    def _closed(self) -> bool:
        if self.tag == "{":
            op, cl = "{", "}"
        elif self.tag == "[":
            op, cl = "[", "]"
        else:
            return False
        count = 0
        for c in self.buffer:
            if c == op:
                count += 1
            elif c == cl:
                count -= 1
                if count == 0:
                    return True
        return False


def _find_arguments(name: str, buf: str) -> tuple[dict[str, Any], int] | None:
    """First balanced JSON object in buf that holds arguments for ``name``."""
    start = -1
    braces = 0
    in_string = escaped = False
    for i, c in enumerate(buf):
        if escaped:
            escaped = False
            continue
        if c == "\\":
            escaped = True
            continue
        if c == '"':
            in_string = not in_string
            continue
        if in_string:
            continue
        if c == "{":
            if braces == 0:
                start = i
            braces += 1
        elif c == "}":
            braces -= 1
            if braces == 0 and start != -1:
                try:
                    data = json.loads(buf[start:i + 1])
                except ValueError:
                    start = -1
                    continue
                if not isinstance(data, dict):
                    start = -1
                    continue
                found, args = _find_object(name, data)
                return (args if found and args is not None else data), i + 1
            braces = max(braces, 0)
    return None


def _as_map(v: Any) -> dict[str, Any] | None:
    if isinstance(v, dict):
        return v
    if isinstance(v, str):
        try:
            d = json.loads(v)
        except ValueError:
            return None
        return d if isinstance(d, dict) else None
    return None


def _find_object(name: str, obj: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    if "name" in obj:
        for key in ("arguments", "parameters"):
            m = _as_map(obj.get(key))
            if m is not None:
                return True, m
        return True, {}
    m = _as_map(obj.get(name))
    if m is not None:
        return True, m
    for v in obj.values():
        children = [v] if isinstance(v, dict) else [x for x in v if isinstance(x, dict)] \
            if isinstance(v, list) else []
        for child in children:
            found, args = _find_object(name, child)
            if found:
                return True, args
    return False, None
