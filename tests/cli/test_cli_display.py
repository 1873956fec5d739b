"""How ``llmcrate run`` prints a streamed reply: thinking blocks, --hidethinking, word wrap,
the final chunk kept for --verbose, and Ctrl-C closing the stream."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.cli.session import Session, stream_reply
from runtime.cli.terminal import WordWrapper


def _chunks(pieces: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    for thinking, content in pieces:
        yield {"message": {"role": "assistant", "thinking": thinking, "content": content}, "done": False}
    yield {"message": {"role": "assistant", "content": ""}, "done": True, "eval_count": len(pieces)}


def _piece(c: dict[str, Any]) -> tuple[str, str]:
    return c["message"].get("thinking", ""), c["message"]["content"]


def test_thinking_then_answer(capsys: pytest.CaptureFixture[str]) -> None:
    s = Session(model="m", word_wrap=False)
    reply = stream_reply(_chunks([("Let me ", ""), ("see.", ""), ("", "Forty"), ("", "-two")]), s, piece=_piece)
    assert capsys.readouterr().out == "Thinking...\nLet me see.\n...done thinking.\n\nForty-two"
    assert (reply.thinking, reply.content) == ("Let me see.", "Forty-two")
    assert reply.final is not None and reply.final["eval_count"] == 4


def test_hidethinking(capsys: pytest.CaptureFixture[str]) -> None:
    s = Session(model="m", word_wrap=False, hide_thinking=True)
    reply = stream_reply(_chunks([("secret", ""), ("", "answer")]), s, piece=_piece)
    assert capsys.readouterr().out == "answer"
    assert reply.content == "answer"


def test_ctrl_c_closes_the_stream(capsys: pytest.CaptureFixture[str]) -> None:
    closed = []

    def endless() -> Iterator[dict[str, Any]]:
        try:
            yield {"message": {"content": "partial"}, "done": False}
            raise KeyboardInterrupt   # what SIGINT does while the client waits for the next line
        finally:
            closed.append(True)

    reply = stream_reply(endless(), Session(model="m", word_wrap=False), piece=_piece)
    assert reply.interrupted and reply.content == "partial" and closed == [True]
    assert capsys.readouterr().out == "partial"


def _render(out: str) -> list[str]:
    """What a terminal shows for ``out``: text, ESC[nD (cursor left), ESC[K (clear to end), newline."""
    lines, line, col = [], [], 0
    i = 0
    while i < len(out):
        m = re.match(r"\x1b\[(\d*)([DK])", out[i:])
        if m:
            if m.group(2) == "D":
                col -= int(m.group(1) or 1)
            else:
                del line[col:]
            i += m.end()
            continue
        ch = out[i]
        if ch == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        else:
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
        i += 1
    lines.append("".join(line).rstrip())
    return lines


def test_word_wrap_moves_the_last_word(capsys: pytest.CaptureFixture[str]) -> None:
    w = WordWrapper(False)
    w.width = 20                       # as if the terminal were 20 columns wide
    w.write("alpha beta gamma ")
    w.write("delta epsilon")           # wrapping carries across chunks
    assert _render(capsys.readouterr().out) == ["alpha beta", "gamma delta", "epsilon"]


def test_no_wrap_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    w = WordWrapper(True)              # stdout is captured, not a terminal: no width, no wrap
    w.write("x" * 300)
    assert capsys.readouterr().out == "x" * 300
