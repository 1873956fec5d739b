"""``llmcrate run``: chat with a model through the server, like ``ollama run``.

One-shot when a PROMPT is given, stdin is piped or stdout is not a terminal (``/api/generate``);
otherwise the interactive session of :mod:`runtime.cli.repl` over ``/api/chat``. Both print
replies with :mod:`runtime.cli.session`. ``run`` starts no server itself; with none listening
it says how to start one.
"""
from __future__ import annotations

import json
import sys

import click

from runtime.cli.client import Client
from runtime.cli.repl import Repl
from runtime.cli.session import (
    Json,
    Session,
    prompt_images,
    request_format,
    stats_block,
    stream_reply,
)
from runtime.cli.terminal import err, out
from runtime.config import load_settings, parse_duration
from runtime.errors import ConfigError, ModelNotFound

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
            Repl(client, session).start(info)
        else:
            generate_once(client, session, " ".join(prompts))


# -- options ------------------------------------------------------------------------------------

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


def generate_once(client: Client, session: Session, prompt: str) -> None:
    """One-shot answer through ``/api/generate`` (PROMPT argument or piped stdin)."""
    images = None
    if session.vision:
        found = prompt_images(prompt)
        prompt, images = found.text, found.images or None
    chunks = client.generate(session.model, prompt, system=session.system or None,
                             format=request_format(session), options=session.options or None,
                             keep_alive=session.keep_alive, think=session.think, images=images)
    reply = stream_reply(chunks, session, piece=lambda c: (c.get("thinking") or "", c.get("response") or ""))
    if reply.interrupted:
        out("\n")
        return
    if prompt:
        out("\n\n")
    if session.verbose and reply.final is not None:
        err(stats_block(reply.final))
