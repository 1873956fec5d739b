"""What ``llmcrate run`` keeps between turns (:class:`Session`) and how a streamed reply is
shown: thinking first, then the answer, word-wrapped, with the ``--verbose`` stats. Shared by
the one-shot answer (:mod:`runtime.cli.chat`) and the interactive loop (:mod:`runtime.cli.repl`)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from runtime.cli.terminal import Spinner, WordWrapper, err, out

if TYPE_CHECKING:
    from runtime.cli.images import PromptImages

Json = dict[str, Any]


@dataclass
class Session:
    """The model, the conversation and the settings ``/set`` changes."""

    model: str
    parent_model: str = ""
    messages: list[Json] = field(default_factory=list)
    system: str = ""
    options: Json = field(default_factory=dict)
    format: str | Json = ""
    keep_alive: str | None = None
    verbose: bool = False
    word_wrap: bool = True
    think: bool | str | None = None
    hide_thinking: bool = False
    vision: bool = False        # the model has a projector: image paths in prompts are read


def go_duration(ns: int) -> str:
    """Format nanoseconds like Go's ``time.Duration.String()`` (Ollama prints its stats so)."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)

    def frac(value: int, unit: int) -> str:
        whole, rest = divmod(value, unit)
        if not rest:
            return str(whole)
        digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}"

    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{frac(ns, 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{frac(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    return f"{sign}{text}{frac(rest, 1_000_000_000)}s"


def stats_block(final: Json) -> str:
    """The ``--verbose`` block: durations, token counts and rates from a final (done) chunk."""
    lines = []
    total, load = int(final.get("total_duration") or 0), int(final.get("load_duration") or 0)
    p_count, p_dur = int(final.get("prompt_eval_count") or 0), int(final.get("prompt_eval_duration") or 0)
    e_count, e_dur = int(final.get("eval_count") or 0), int(final.get("eval_duration") or 0)
    if total > 0:
        lines.append(f"total duration:       {go_duration(total)}")
    if load > 0:
        lines.append(f"load duration:        {go_duration(load)}")
    if p_count > 0:
        lines.append(f"prompt eval count:    {p_count} token(s)")
    if p_dur > 0:
        lines.append(f"prompt eval duration: {go_duration(p_dur)}")
        lines.append(f"prompt eval rate:     {p_count / (p_dur / 1e9):.2f} tokens/s")
    if e_count > 0:
        lines.append(f"eval count:           {e_count} token(s)")
    if e_dur > 0:
        lines.append(f"eval duration:        {go_duration(e_dur)}")
        lines.append(f"eval rate:            {e_count / (e_dur / 1e9):.2f} tokens/s")
    return "".join(line + "\n" for line in lines)


@dataclass
class Reply:
    """What a streamed reply came to (the final chunk holds the ``--verbose`` timings)."""

    content: str = ""
    thinking: str = ""
    role: str = "assistant"
    final: Json | None = None
    interrupted: bool = False


def stream_reply(chunks: Iterator[Json], session: Session, *,
                 piece: Callable[[Json], tuple[str, str]]) -> Reply:
    """Print a streamed reply (thinking first, then content); Ctrl-C stops it and closes the stream.

    ``piece(chunk)`` returns the chunk's ``(thinking, content)`` text.
    """
    reply = Reply()
    wrap = WordWrapper(session.word_wrap)
    spinner = Spinner()
    thinking_open = False
    try:
        with closing(chunks):   # type: ignore[type-var]
            for chunk in chunks:
                thinking, content = piece(chunk)
                if content or not session.hide_thinking:
                    spinner.stop()
                if thinking and not session.hide_thinking:
                    if not thinking_open:
                        out("Thinking...\n")
                        thinking_open = True
                    reply.thinking += thinking
                    wrap.write(thinking)
                if thinking_open and content:
                    out("\n...done thinking.\n\n" if not reply.thinking.endswith("\n")
                        else "...done thinking.\n\n")
                    thinking_open = False
                    wrap = WordWrapper(session.word_wrap)
                if content:
                    reply.content += content
                    wrap.write(content)
                if isinstance(chunk.get("message"), dict):
                    reply.role = chunk["message"].get("role") or reply.role
                if chunk.get("done"):
                    reply.final = chunk
    except KeyboardInterrupt:
        reply.interrupted = True
    finally:
        spinner.stop()
    return reply


def prompt_images(prompt: str) -> PromptImages:
    """Image paths in a prompt read for a vision model (``Added image '…'`` on stderr)."""
    from runtime.cli.images import extract_images  # image checks only for vision models

    found = extract_images(prompt)
    for path in found.paths:
        err(f"Added image '{path}'\n")
    return found


def request_format(session: Session) -> str | Json | None:
    """The request's ``format``: none when the session sets none."""
    return session.format or None
