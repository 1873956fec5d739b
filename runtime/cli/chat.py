"""``llmcrate run``: chat with a model through the server, like ``ollama run``.

One-shot when a PROMPT is given, stdin is piped or stdout is not a terminal (``/api/generate``);
otherwise the interactive session of :mod:`runtime.cli.repl` over ``/api/chat``. Also the
streaming output both share: word wrap, spinner, thinking blocks, the ``--verbose`` stats.
``run`` starts no server itself; with none listening it says how to start one.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import unicodedata
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import click

from runtime.client import Client
from runtime.config import load_settings, parse_duration
from runtime.errors import ConfigError, ModelNotFound

Json = dict[str, Any]


_RUN_ENV = """\b
Environment Variables:
  OLLAMA_HOST       The server to talk to (default 127.0.0.1:11434)
  OLLAMA_NOHISTORY  Do not keep input history (~/.llmcrate/history)
"""


@click.command(epilog=_RUN_ENV)
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--verbose", is_flag=True, help="Show timings for response")
@click.option("--format", "format_", default="", metavar="FORMAT", help="Response format (e.g. json)")
@click.option("--keepalive", default=None, metavar="DUR", help="Duration to keep a model loaded (e.g. 5m)")
@click.option("--nowordwrap", is_flag=True, help="Don't wrap words to the next line automatically")
@click.option("--think", is_flag=False, flag_value="true", default=None, metavar="[true|false|high|medium|low]",
              help="Enable thinking mode for models that support it")
@click.option("--hidethinking", is_flag=True, help="Hide thinking output (if provided)")
def run(model: str, prompt: tuple[str, ...], verbose: bool, format_: str, keepalive: str | None,
        nowordwrap: bool, think: str | None, hidethinking: bool) -> None:
    """Run a model: chat interactively, or answer PROMPT (or piped stdin) once."""
    session = Session(model=model, verbose=verbose, format=_check_format(format_),
                      keep_alive=_check_keep_alive(keepalive), hide_thinking=hidethinking,
                      think=_check_think(think), word_wrap=not nowordwrap)
    prompts = list(prompt)
    interactive = not prompts
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        if piped:
            prompts.insert(0, piped)
        interactive, session.word_wrap = False, False
    if not sys.stdout.isatty():
        interactive, session.word_wrap = False, False

    with Client(load_settings()) as client:
        info = _show(client, model)
        if session.think is None and "thinking" in (info.get("capabilities") or []):
            session.think = True
        session.parent_model = (info.get("details") or {}).get("parent_model", "")
        session.vision = "vision" in (info.get("capabilities") or [])
        if interactive:
            from runtime.cli.repl import Repl

            Repl(client, session).start(info)
        else:
            generate_once(client, session, " ".join(prompts))


# -- session state ------------------------------------------------------------------------------

@dataclass
class Session:
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


def _check_format(value: str) -> str | Json:
    if value in ("", "json"):
        return value
    try:
        schema = json.loads(value)
    except ValueError:
        schema = None
    if not isinstance(schema, dict):
        raise ConfigError("--format", f'invalid format "{value}" (use json, or a JSON schema object)')
    return schema


def _check_keep_alive(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value, key="--keepalive")
    return value


def _check_think(value: str | None) -> bool | str | None:
    if value is None:
        return None
    v = value.lower()
    if v in ("", "true"):
        return True
    if v == "false":
        return False
    if v in ("high", "medium", "low"):
        return v
    raise ConfigError("--think", f'invalid value "{value}" (must be true, false, high, medium, or low)')


def _show(client: Client, model: str) -> Json:
    try:
        return client.show(model)
    except ModelNotFound as e:
        e.hint = f"see `llmcrate list` for the models the server has, or `llmcrate pull {model}`"
        raise


# -- output -------------------------------------------------------------------------------------

def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _char_width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class WordWrapper:
    """Streams text to stdout, moving a word that would cross the right edge to the next line."""

    def __init__(self, enabled: bool) -> None:
        self.line_length = 0
        self.word = ""
        self.width = 0
        if enabled:
            try:
                self.width = os.get_terminal_size(sys.stdout.fileno()).columns
            except (OSError, ValueError):
                self.width = 0

    def write(self, text: str) -> None:
        if self.width < 10:
            _out(self.word + text)
            self.word = ""
            return
        out: list[str] = []
        for ch in text:
            w = _char_width(ch)
            if self.line_length + 1 > self.width - 5:
                word_width = sum(_char_width(c) for c in self.word)
                if word_width > self.width - 10:       # a word longer than a line: just break it
                    out.append(self.word + ch)
                    self.word, self.line_length = "", 0
                    continue
                # move back over the partial word, clear to the end of the line, reprint it below
                out.append((f"\x1b[{word_width}D" if word_width else "") + "\x1b[K\n" + self.word + ch)
                self.line_length = word_width + w
            else:
                out.append(ch)
                self.line_length += w
                if w >= 2 or ch in " \t":
                    self.word = ""
                elif ch in "\r\n":
                    self.line_length, self.word = 0, ""
                else:
                    self.word += ch
        _out("".join(out))


class Spinner:
    """A braille spinner on stderr while waiting for the first token (only on a terminal)."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if sys.stderr.isatty():
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()

    def _spin(self) -> None:
        i = 0
        while not self._stop.wait(0.1):
            _err("\r" + self.FRAMES[i % len(self.FRAMES)] + " ")
            i += 1

    def stop(self) -> None:
        if self._thread is not None and not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            _err("\r\x1b[K")
        self._stop.set()


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
                        _out("Thinking...\n")
                        thinking_open = True
                    reply.thinking += thinking
                    wrap.write(thinking)
                if thinking_open and content:
                    _out("\n...done thinking.\n\n" if not reply.thinking.endswith("\n")
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


def prompt_images(prompt: str) -> Any:
    """Image paths in a prompt read for a vision model (``Added image '…'`` on stderr)."""
    from runtime.cli.images import extract_images

    found = extract_images(prompt)
    for path in found.paths:
        _err(f"Added image '{path}'\n")
    return found


def _request_format(session: Session) -> str | Json | None:
    return session.format or None


def generate_once(client: Client, session: Session, prompt: str) -> None:
    """One-shot answer through ``/api/generate`` (PROMPT argument or piped stdin)."""
    images = None
    if session.vision:
        found = prompt_images(prompt)
        prompt, images = found.text, found.images or None
    chunks = client.generate(session.model, prompt, system=session.system or None,
                             format=_request_format(session), options=session.options or None,
                             keep_alive=session.keep_alive, think=session.think, images=images)
    reply = stream_reply(chunks, session, piece=lambda c: (c.get("thinking") or "", c.get("response") or ""))
    if reply.interrupted:
        _out("\n")
        return
    if prompt:
        _out("\n\n")
    if session.verbose and reply.final is not None:
        _err(stats_block(reply.final))
