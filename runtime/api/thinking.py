"""Thinking output (``<think>…</think>``) separated from the answer, as Ollama's thinking.Parser.

Thinking starts when the output (after leading white space) opens with the opening tag, or
right away when the prompt already ends with it; it ends at the closing tag, after which
leading white space of the answer is dropped. Partial tags are held back across chunks.
"""
from __future__ import annotations

import json
from typing import Any

OPEN, CLOSE = "<think>", "</think>"


def thinking_tags(template: str | None) -> tuple[str, str] | None:
    """The tags a template's thinking uses, or None (only ``<think>`` is recognised)."""
    return (OPEN, CLOSE) if template and OPEN in template and CLOSE in template else None


def wants_thinking(template: str | None, think: Any) -> bool:
    """Ollama turns thinking on by default for models whose template supports it."""
    if think is False or think == "none":
        return False
    return thinking_tags(template) is not None and (
        think is None or think is True or think in THINK_LEVELS)


class ThinkingParser:
    def __init__(self, *, prompt: str) -> None:
        self.state = "thinking" if prompt.rstrip().endswith(OPEN) else "looking"
        self.buf = ""

    def add(self, text: str) -> tuple[str, str]:
        """Feed output; returns (thinking, content) ready to emit."""
        self.buf += text
        thinking = content = ""
        while True:
            if self.state == "looking":
                stripped = self.buf.lstrip()
                if not stripped:
                    return thinking, content
                if stripped.startswith(OPEN):
                    self.buf = stripped[len(OPEN):]
                    self.state = "thinking"
                    continue
                if OPEN.startswith(stripped):
                    return thinking, content          # maybe a tag: wait for more
                self.state = "content"
            if self.state == "thinking":
                i = self.buf.find(CLOSE)
                if i >= 0:
                    thinking += self.buf[:i]
                    self.buf = self.buf[i + len(CLOSE):]
                    self.state = "after"
                    continue
                hold = _partial_suffix(self.buf, CLOSE)
                thinking += self.buf[: len(self.buf) - hold]
                self.buf = self.buf[len(self.buf) - hold:]
                return thinking, content
            if self.state == "after":
                self.buf = self.buf.lstrip()
                if not self.buf:
                    return thinking, content
                self.state = "content"
            content += self.buf
            self.buf = ""
            return thinking, content

    def finish(self) -> tuple[str, str]:
        rest, self.buf = self.buf, ""
        if self.state == "thinking":
            return rest, ""
        return "", rest.lstrip() if self.state == "after" else rest


def _partial_suffix(text: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


#: the string values of Ollama's ``think`` (api.ThinkValue); any of them turns thinking on
THINK_LEVELS = ("high", "medium", "low", "max")


def think_from_reasoning_effort(effort: Any) -> Any:
    """OpenAI's ``reasoning_effort`` as Ollama's think value (openai.thinkFromReasoningEffort):
    None leaves the model's default; tiers beyond Ollama's are clamped; others are an error."""
    from runtime.api.errors import ApiError

    if effort is None or effort == "":
        return None
    mapping = {"none": False, "minimal": "low", "low": "low", "medium": "medium",
               "high": "high", "max": "max", "xhigh": "max", "ultra": "max"}
    if not isinstance(effort, str) or effort not in mapping:
        raise ApiError(400, f"invalid reasoning value: {json.dumps(effort)} (must be \"minimal\", "
                            "\"low\", \"medium\", \"high\", \"xhigh\", \"ultra\", \"max\", or \"none\")")
    return mapping[effort]
