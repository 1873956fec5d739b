"""``llmcrate run``: chat with a model through the server, like ``ollama run``.

One-shot when a PROMPT is given, stdin is piped or stdout is not a terminal (``/api/generate``);
otherwise an interactive session over ``/api/chat`` with stdlib readline: ``\"\"\"`` multi-line
input, ``/set``, ``/show``, ``/load``, ``/save``, ``/clear``, ``/bye``; Ctrl-C stops a reply,
Ctrl-D exits. ``run`` starts no server itself; with none listening it says how to start one.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import unicodedata
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from ..client import Client
from ..config import load_settings, parse_duration
from ..errors import ConfigError, InvalidName, LlmcrateError, ModelNotFound, ServerUnavailable
from ..format import human_bytes, human_time, table
from .models import render_show
from .server import parse_timestamp

Json = dict[str, Any]


@click.command()
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
        if interactive:
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


def _request_format(session: Session) -> str | Json | None:
    return session.format or None


def generate_once(client: Client, session: Session, prompt: str) -> None:
    """One-shot answer through ``/api/generate`` (PROMPT argument or piped stdin)."""
    chunks = client.generate(session.model, prompt, system=session.system or None,
                             format=_request_format(session), options=session.options or None,
                             keep_alive=session.keep_alive, think=session.think)
    reply = stream_reply(chunks, session, piece=lambda c: (c.get("thinking") or "", c.get("response") or ""))
    if reply.interrupted:
        _out("\n")
        return
    if prompt:
        _out("\n\n")
    if session.verbose and reply.final is not None:
        _err(stats_block(reply.final))


# -- interactive --------------------------------------------------------------------------------

USAGE = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.

"""

USAGE_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking

"""

USAGE_SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
   Alt + b            Move back (left) one word
   Alt + f            Move forward (right) one word
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor

  Ctrl + l            Clear the screen
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit llmcrate (/bye)

"""

USAGE_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template

"""

USAGE_PARAMETERS = """Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter num_gpu <int>          The number of layers to send to the GPU
  /set parameter stop <string> <string> ...   Set the stop parameters

"""

#: Ollama's runtime options and their types, for ``/set parameter`` (api.Options).
PARAMETER_TYPES: dict[str, type] = {
    **dict.fromkeys(("num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch",
                     "num_gpu", "main_gpu", "num_thread", "mirostat"), int),
    **dict.fromkeys(("top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
                     "frequency_penalty", "tfs_z", "mirostat_tau", "mirostat_eta"), float),
    **dict.fromkeys(("use_mmap", "use_mlock", "numa", "low_vram", "penalize_newline", "vocab_only"), bool),
    "stop": list,
}


def parse_parameter(name: str, values: list[str]) -> Any:
    """Convert ``/set parameter NAME VALUE...`` to the option's type; ValueError says why not."""
    kind = PARAMETER_TYPES.get(name)
    if kind is None:
        raise ValueError(f"unknown parameter '{name}'")
    if kind is list:
        return list(values)
    value = values[0]
    try:
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
    except ValueError:
        raise ValueError(f"invalid {kind.__name__} value [{value}]") from None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ValueError(f"invalid bool value [{value}]")


def _history_file() -> Path:
    return Path(os.path.expanduser("~")) / ".llmcrate" / "history"


class Repl:
    """The interactive loop of ``llmcrate run``."""

    def __init__(self, client: Client, session: Session) -> None:
        self.client = client
        self.s = session
        self.buffer: list[str] = []
        self.multiline: str | None = None     # None, "prompt" or "system"
        self.history = os.environ.get("OLLAMA_NOHISTORY", "") in ("", "0", "false")
        self._readline: Any = None

    # readline is optional (not on every platform); input() works without it
    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:   # pragma: no cover
            return
        self._readline = readline
        if self.history:
            try:
                readline.read_history_file(_history_file())
            except OSError:
                pass

    def _save_history(self) -> None:
        if self._readline is None or not self.history:
            return
        path = _history_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._readline.set_history_length(1000)
            self._readline.write_history_file(path)
        except OSError:
            pass

    def start(self, info: Json) -> None:
        self._load(self.s.model)
        for msg in info.get("messages") or []:
            if msg.get("role") == "user":
                _out(f">>> {msg.get('content', '')}\n")
            elif msg.get("role") == "assistant":
                WordWrapper(self.s.word_wrap).write(msg.get("content", ""))
                _out("\n\n")
        self._setup_readline()
        try:
            self._loop()
        finally:
            self._save_history()

    def _load(self, model: str) -> None:
        spinner = Spinner()
        try:
            self.client.load(model, keep_alive=self.s.keep_alive)
        finally:
            spinner.stop()

    def _loop(self) -> None:
        while True:
            try:
                line = input("... " if self.multiline or self.buffer else ">>> ")
            except EOFError:
                _out("\n")
                return
            except KeyboardInterrupt:
                typed = self._readline.get_line_buffer() if self._readline is not None else ""
                if not typed:
                    _out("\nUse Ctrl + d or /bye to exit.\n")
                else:
                    _out("\n")
                self.buffer, self.multiline = [], None
                continue
            if self._handle(line) == "exit":
                return

    def _handle(self, line: str) -> str | None:
        if self.multiline is not None:
            done = line.endswith('"""')
            self.buffer.append(line[:-3] if done else line)
            if not done:
                return None
            text = "\n".join(self.buffer)
            if self.multiline == "system":
                self._set_system(text)
                self.buffer, self.multiline = [], None
                return None
            self.multiline = None
        elif line.startswith('"""'):
            rest = line[3:]
            if rest.endswith('"""') and len(rest) >= 3:
                self.buffer.append(rest[:-3])
            else:
                self.buffer.append(rest)
                self.multiline = "prompt"
                return None
        elif line.startswith("/"):
            return self._command(line)
        else:
            self.buffer.append(line)

        text = "\n".join(self.buffer)
        self.buffer = []
        if text:
            self._send(text)
        return None

    def _command(self, line: str) -> str | None:
        args = line.split()
        cmd = args[0]
        if cmd in ("/bye", "/exit"):
            return "exit"
        if cmd in ("/?", "/help"):
            topic = args[1] if len(args) > 1 else ""
            _err({"set": USAGE_SET, "/set": USAGE_SET, "show": USAGE_SHOW, "/show": USAGE_SHOW,
                  "shortcut": USAGE_SHORTCUTS, "shortcuts": USAGE_SHORTCUTS}.get(topic, USAGE))
        elif cmd == "/set":
            self._cmd_set(line, args)
        elif cmd == "/show":
            self._cmd_show(args)
        elif cmd == "/clear":
            self.s.messages = [{"role": "system", "content": self.s.system}] if self.s.system else []
            _out("Cleared session context\n")
        elif cmd == "/load":
            self._cmd_load(args)
        elif cmd == "/save":
            self._cmd_save(args)
        elif cmd == "/list":
            self._cmd_list()
        else:
            _out(f"Unknown command '{cmd}'. Type /? for help\n")
        return None

    def _cmd_set(self, line: str, args: list[str]) -> None:
        if len(args) < 2:
            _err(USAGE_SET)
            return
        what = args[1]
        if what in ("history", "nohistory"):
            self.history = what == "history"
        elif what in ("wordwrap", "nowordwrap"):
            self.s.word_wrap = what == "wordwrap"
            _out(f"Set '{what}' mode.\n")
        elif what in ("verbose", "quiet"):
            self.s.verbose = what == "verbose"
            _out(f"Set '{what}' mode.\n")
        elif what == "think":
            level = args[2] if len(args) > 2 else ""
            self.s.think = level or True
            _out(f"Set 'think' mode to '{level}'.\n" if level else "Set 'think' mode.\n")
        elif what == "nothink":
            self.s.think = False
            _out("Set 'nothink' mode.\n")
        elif what == "format":
            if len(args) < 3 or args[2] != "json":
                _out("Invalid or missing format. For 'json' mode use '/set format json'\n")
            else:
                self.s.format = "json"
                _out("Set format to 'json' mode.\n")
        elif what == "noformat":
            self.s.format = ""
            _out("Disabled format.\n")
        elif what == "parameter":
            if len(args) < 4:
                _err(USAGE_PARAMETERS)
                return
            try:
                value = parse_parameter(args[2], args[3:])
            except ValueError as e:
                _out(f'Couldn\'t set parameter: "{e}"\n')
                return
            self.s.options[args[2]] = value
            _out(f"Set parameter '{args[2]}' to '{', '.join(args[3:])}'\n")
        elif what == "system":
            if len(args) < 3:
                _err(USAGE_SET)
                return
            text = line.split(None, 2)[2]
            if text.startswith('"""'):
                text = text[3:]
                if text.endswith('"""') and len(text) >= 3:
                    self._set_system(text[:-3])
                else:
                    self.buffer, self.multiline = [text], "system"
                return
            self._set_system(text)
        else:
            _out(f"Unknown command '/set {what}'. Type /? for help\n")

    def _set_system(self, text: str) -> None:
        self.s.system = text
        message = {"role": "system", "content": text}
        if self.s.messages and self.s.messages[-1].get("role") == "system":
            self.s.messages[-1] = message
        else:
            self.s.messages.append(message)
        _out("Set system message.\n")

    def _cmd_show(self, args: list[str]) -> None:
        if len(args) < 2:
            _err(USAGE_SHOW)
            return
        try:
            resp = self.client.show(self.s.model, system=self.s.system or None, options=self.s.options or None)
        except LlmcrateError as e:
            _out(f"error: couldn't get model: {e}\n")
            return
        what = args[1]
        if what == "info":
            _err(render_show(resp) + "\n")
        elif what == "license":
            _out((_license_text(resp) or "No license was specified for this model.") + "\n")
        elif what == "modelfile":
            _out(str(resp.get("modelfile", "")) + "\n")
        elif what == "parameters":
            _out("Model defined parameters:\n")
            params = str(resp.get("parameters") or "")
            if not params:
                _out("  No additional parameters were specified for this model.\n")
            else:
                _out("".join(f"  {p}\n" for p in params.split("\n")))
            _out("\n")
            if self.s.options:
                _out("User defined parameters:\n")
                for k, v in self.s.options.items():
                    _out(f"  {k:<30} {_go_value(v)}\n")
                _out("\n")
        elif what == "system":
            system = self.s.system or resp.get("system") or ""
            _out(system + "\n\n" if system else "No system message was specified for this model.\n")
        elif what == "template":
            template = resp.get("template") or ""
            _out(template + "\n" if template else "No prompt template was specified for this model.\n")
        else:
            _out(f"Unknown command '/show {what}'. Type /? for help\n")

    def _cmd_load(self, args: list[str]) -> None:
        if len(args) != 2:
            _out("Usage:\n  /load <modelname>\n")
            return
        name = args[1]
        _out(f"Loading model '{name}'\n")
        try:
            info = self.client.show(name)
            self._load(name)
        except ModelNotFound:
            _out(f"Couldn't find model '{name}'\n")
            return
        self.s.model, self.s.messages = name, []
        self.s.parent_model = (info.get("details") or {}).get("parent_model", "")

    def _cmd_save(self, args: list[str]) -> None:
        if len(args) != 2:
            _out("Usage:\n  /save <modelname>\n")
            return
        name = args[1]
        try:
            for _ in self.client.create(name, from_=self.s.parent_model or self.s.model,
                                        system=self.s.system or None, parameters=self.s.options or None,
                                        messages=self.s.messages or None):
                pass
        except InvalidName:
            _out(f"error: The model name '{name}' is invalid\n")
            return
        except LlmcrateError as e:
            if "invalid model name" in str(e).lower():
                _out(f"error: The model name '{name}' is invalid\n")
                return
            _out(f"error: {e}\n")
            return
        _out(f"Created new model '{name}'\n")

    def _cmd_list(self) -> None:
        models = self.client.list()
        rows = [[m.get("name", ""), str(m.get("digest", "")).split(":")[-1][:12],
                 human_bytes(int(m.get("size") or 0)),
                 human_time(_timestamp(m.get("modified_at")))] for m in models]
        _out(table(rows, header=["NAME", "ID", "SIZE", "MODIFIED"]) + "\n")

    def _send(self, text: str) -> None:
        self.s.messages.append({"role": "user", "content": text})
        chunks = self.client.chat(self.s.model, self.s.messages, format=_request_format(self.s),
                                  options=self.s.options or None, keep_alive=self.s.keep_alive,
                                  think=self.s.think)
        try:
            reply = stream_reply(chunks, self.s, piece=_chat_piece)
        except ServerUnavailable:
            raise
        except LlmcrateError as e:
            _out(f"\nError: {e}\n\n")
            return
        if reply.interrupted:
            _out("\n")
            return
        _out("\n\n")
        if self.s.verbose and reply.final is not None:
            _err(stats_block(reply.final))
        self.s.messages.append({"role": reply.role, "content": reply.content})


def _timestamp(text: Any) -> float | None:
    when = parse_timestamp(text if isinstance(text, str) else None)
    return when.timestamp() if when is not None else None


def _chat_piece(chunk: Json) -> tuple[str, str]:
    msg = chunk.get("message") or {}
    return msg.get("thinking") or "", msg.get("content") or ""


def _license_text(resp: Json) -> str:
    lic = resp.get("license") or ""
    return "\n".join(lic) if isinstance(lic, list) else str(lic)


def _go_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + " ".join(str(x) for x in v) + "]"
    return str(v)
