"""The interactive session of ``llmcrate run`` (like ``ollama run``): stdlib readline input,
``\"\"\"`` multi-line messages, ``/set``, ``/show``, ``/load``, ``/save``, ``/clear``, ``/list``, ``/bye``.
Ctrl-C at the prompt clears the line, Ctrl-C during a reply stops it, Ctrl-D exits.

The ``/`` commands are tables (:data:`COMMANDS`, :data:`SET_COMMANDS`, :data:`SHOW_COMMANDS`):
name -> handler, and the help texts are generated from them."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from runtime.cli.client import Client
from runtime.cli.models import render_show
from runtime.cli.server import parse_timestamp
from runtime.cli.session import (
    Json,
    Session,
    prompt_images,
    request_format,
    stats_block,
    stream_reply,
)
from runtime.cli.terminal import Spinner, WordWrapper, err, out
from runtime.errors import (
    ImageError,
    InvalidName,
    LlmcrateError,
    ModelNotFound,
    ServerUnavailable,
)
from runtime.format import human_bytes, human_time, table
from runtime.options import coerce_parameter

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


def parse_parameter(name: str, values: list[str]) -> Any:
    """Convert ``/set parameter NAME VALUE...`` to the option's type (the Modelfile's rules);
    ``OptionError`` (a ValueError) says why not. List options such as ``stop`` take every value."""
    value = coerce_parameter(name, values[0])
    return list(values) if isinstance(value, list) else value


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
                out(f">>> {msg.get('content', '')}\n")
            elif msg.get("role") == "assistant":
                WordWrapper(self.s.word_wrap).write(msg.get("content", ""))
                out("\n\n")
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
                out("\n")
                return
            except KeyboardInterrupt:
                typed = self._readline.get_line_buffer() if self._readline is not None else ""
                if not typed:
                    out("\nUse Ctrl + d or /bye to exit.\n")
                else:
                    out("\n")
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
        command = _BY_NAME.get(args[0])
        if command is None:
            out(f"Unknown command '{args[0]}'. Type /? for help\n")
            return None
        return command.run(self, line, args)

    # -- the / commands (see COMMANDS below) ----------------------------------------------------

    def _cmd_bye(self, line: str, args: list[str]) -> str | None:
        return "exit"

    def _cmd_help(self, line: str, args: list[str]) -> str | None:
        topic = args[1] if len(args) > 1 else ""
        err(HELP_TOPICS.get(topic, USAGE))
        return None

    def _cmd_clear(self, line: str, args: list[str]) -> str | None:
        self.s.messages = [{"role": "system", "content": self.s.system}] if self.s.system else []
        out("Cleared session context\n")
        return None

    def _cmd_set(self, line: str, args: list[str]) -> str | None:
        if len(args) < 2:
            err(USAGE_SET)
            return None
        sub = _SET_BY_NAME.get(args[1])
        if sub is None:
            out(f"Unknown command '/set {args[1]}'. Type /? for help\n")
        else:
            sub.run(self, line, args)
        return None

    def _set_history(self, line: str, args: list[str]) -> None:
        self.history = args[1] == "history"

    def _set_mode(self, line: str, args: list[str]) -> None:
        what = args[1]
        if what in ("wordwrap", "nowordwrap"):
            self.s.word_wrap = what == "wordwrap"
        else:
            self.s.verbose = what == "verbose"
        out(f"Set '{what}' mode.\n")

    def _set_think(self, line: str, args: list[str]) -> None:
        level = args[2] if len(args) > 2 else ""
        self.s.think = level or True
        out(f"Set 'think' mode to '{level}'.\n" if level else "Set 'think' mode.\n")

    def _set_nothink(self, line: str, args: list[str]) -> None:
        self.s.think = False
        out("Set 'nothink' mode.\n")

    def _set_format(self, line: str, args: list[str]) -> None:
        if len(args) < 3 or args[2] != "json":
            out("Invalid or missing format. For 'json' mode use '/set format json'\n")
        else:
            self.s.format = "json"
            out("Set format to 'json' mode.\n")

    def _set_noformat(self, line: str, args: list[str]) -> None:
        self.s.format = ""
        out("Disabled format.\n")

    def _set_parameter(self, line: str, args: list[str]) -> None:
        if len(args) < 4:
            err(USAGE_PARAMETERS)
            return
        try:
            value = parse_parameter(args[2], args[3:])
        except ValueError as e:
            out(f"Couldn't set parameter: {e}\n")
            return
        self.s.options[args[2]] = value
        out(f"Set parameter '{args[2]}' to '{', '.join(args[3:])}'\n")

    def _set_system_cmd(self, line: str, args: list[str]) -> None:
        if len(args) < 3:
            err(USAGE_SET)
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

    def _set_system(self, text: str) -> None:
        self.s.system = text
        message = {"role": "system", "content": text}
        if self.s.messages and self.s.messages[-1].get("role") == "system":
            self.s.messages[-1] = message
        else:
            self.s.messages.append(message)
        out("Set system message.\n")

    def _cmd_show(self, line: str, args: list[str]) -> str | None:
        if len(args) < 2:
            err(USAGE_SHOW)
            return None
        try:
            resp = self.client.show(self.s.model, system=self.s.system or None, options=self.s.options or None)
        except LlmcrateError as e:
            out(f"error: couldn't get model: {e}\n")
            return None
        sub = _SHOW_BY_NAME.get(args[1])
        if sub is None:
            out(f"Unknown command '/show {args[1]}'. Type /? for help\n")
        else:
            sub.run(self, resp)
        return None

    def _show_info(self, resp: Json) -> None:
        err(render_show(resp) + "\n")

    def _show_license(self, resp: Json) -> None:
        out((_license_text(resp) or "No license was specified for this model.") + "\n")

    def _show_modelfile(self, resp: Json) -> None:
        out(str(resp.get("modelfile", "")) + "\n")

    def _show_parameters(self, resp: Json) -> None:
        out("Model defined parameters:\n")
        params = str(resp.get("parameters") or "")
        if not params:
            out("  No additional parameters were specified for this model.\n")
        else:
            out("".join(f"  {p}\n" for p in params.split("\n")))
        out("\n")
        if self.s.options:
            out("User defined parameters:\n")
            for k, v in self.s.options.items():
                out(f"  {k:<30} {_go_value(v)}\n")
            out("\n")

    def _show_system(self, resp: Json) -> None:
        system = self.s.system or resp.get("system") or ""
        out(system + "\n\n" if system else "No system message was specified for this model.\n")

    def _show_template(self, resp: Json) -> None:
        template = resp.get("template") or ""
        out(template + "\n" if template else "No prompt template was specified for this model.\n")

    def _cmd_load(self, line: str, args: list[str]) -> str | None:
        if len(args) != 2:
            out("Usage:\n  /load <modelname>\n")
            return None
        name = args[1]
        out(f"Loading model '{name}'\n")
        try:
            info = self.client.show(name)
            self._load(name)
        except ModelNotFound:
            out(f"Couldn't find model '{name}'\n")
            return None
        self.s.model, self.s.messages = name, []
        self.s.parent_model = (info.get("details") or {}).get("parent_model", "")
        self.s.vision = "vision" in (info.get("capabilities") or [])
        return None

    def _cmd_save(self, line: str, args: list[str]) -> str | None:
        if len(args) != 2:
            out("Usage:\n  /save <modelname>\n")
            return None
        name = args[1]
        try:
            for _ in self.client.create(name, from_=self.s.parent_model or self.s.model,
                                        system=self.s.system or None, parameters=self.s.options or None,
                                        messages=self.s.messages or None):
                pass
        except InvalidName:
            out(f"error: The model name '{name}' is invalid\n")
            return None
        except LlmcrateError as e:
            if "invalid model name" in str(e).lower():
                out(f"error: The model name '{name}' is invalid\n")
                return None
            out(f"error: {e}\n")
            return None
        out(f"Created new model '{name}'\n")
        return None

    def _cmd_list(self, line: str, args: list[str]) -> str | None:
        models = self.client.list()
        rows = [[m.get("name", ""), str(m.get("digest", "")).split(":")[-1][:12],
                 human_bytes(int(m.get("size") or 0)),
                 human_time(_timestamp(m.get("modified_at")))] for m in models]
        out(table(rows, header=["NAME", "ID", "SIZE", "MODIFIED"]) + "\n")
        return None

    def _send(self, text: str) -> None:
        message: Json = {"role": "user", "content": text}
        if self.s.vision:
            try:
                found = prompt_images(text)
            except ImageError as e:
                out(f"Couldn't process image: {e}\n")
                return
            message["content"] = found.text
            if found.images:
                message["images"] = found.images    # kept: later turns and /save resend them
        self.s.messages.append(message)
        chunks = self.client.chat(self.s.model, self.s.messages, format=request_format(self.s),
                                  options=self.s.options or None, keep_alive=self.s.keep_alive,
                                  think=self.s.think)
        try:
            reply = stream_reply(chunks, self.s, piece=_chat_piece)
        except ServerUnavailable:
            raise
        except LlmcrateError as e:
            out(f"\nError: {e}\n\n")
            return
        if reply.interrupted:
            out("\n")
            return
        out("\n\n")
        if self.s.verbose and reply.final is not None:
            err(stats_block(reply.final))
        self.s.messages.append({"role": reply.role, "content": reply.content})


# -- the / command tables: dispatch and help text come from these ----------------------------

@dataclass(frozen=True)
class SlashCommand:
    """A ``/`` command: the names it answers to, its help line (none: left out of the help,
    as Ollama leaves out ``/exit`` and ``/list``) and its handler ("exit" ends the session)."""

    names: tuple[str, ...]
    usage: str
    summary: str
    run: Callable[[Repl, str, list[str]], str | None]


@dataclass(frozen=True)
class SetCommand:
    """A ``/set`` subcommand: name, help line, handler (gets the whole line and its words)."""

    name: str
    usage: str
    summary: str
    run: Callable[[Repl, str, list[str]], None]


@dataclass(frozen=True)
class ShowCommand:
    """A ``/show`` subcommand: name, help line, handler (gets the model's ``/api/show`` body)."""

    name: str
    summary: str
    run: Callable[[Repl, Json], None]


COMMANDS: tuple[SlashCommand, ...] = (
    SlashCommand(("/set",), "/set", "Set session variables", Repl._cmd_set),
    SlashCommand(("/show",), "/show", "Show model information", Repl._cmd_show),
    SlashCommand(("/load",), "/load <model>", "Load a session or model", Repl._cmd_load),
    SlashCommand(("/save",), "/save <model>", "Save your current session", Repl._cmd_save),
    SlashCommand(("/clear",), "/clear", "Clear session context", Repl._cmd_clear),
    SlashCommand(("/bye", "/exit"), "/bye", "Exit", Repl._cmd_bye),
    SlashCommand(("/?", "/help"), "/?, /help", "Help for a command", Repl._cmd_help),
    SlashCommand(("/list",), "", "", Repl._cmd_list),
)

SET_COMMANDS: tuple[SetCommand, ...] = (
    SetCommand("parameter", "/set parameter ...", "Set a parameter", Repl._set_parameter),
    SetCommand("system", "/set system <string>", "Set system message", Repl._set_system_cmd),
    SetCommand("history", "/set history", "Enable history", Repl._set_history),
    SetCommand("nohistory", "/set nohistory", "Disable history", Repl._set_history),
    SetCommand("wordwrap", "/set wordwrap", "Enable wordwrap", Repl._set_mode),
    SetCommand("nowordwrap", "/set nowordwrap", "Disable wordwrap", Repl._set_mode),
    SetCommand("format", "/set format json", "Enable JSON mode", Repl._set_format),
    SetCommand("noformat", "/set noformat", "Disable formatting", Repl._set_noformat),
    SetCommand("verbose", "/set verbose", "Show LLM stats", Repl._set_mode),
    SetCommand("quiet", "/set quiet", "Disable LLM stats", Repl._set_mode),
    SetCommand("think", "/set think", "Enable thinking", Repl._set_think),
    SetCommand("nothink", "/set nothink", "Disable thinking", Repl._set_nothink),
)

SHOW_COMMANDS: tuple[ShowCommand, ...] = (
    ShowCommand("info", "Show details for this model", Repl._show_info),
    ShowCommand("license", "Show model license", Repl._show_license),
    ShowCommand("modelfile", "Show Modelfile for this model", Repl._show_modelfile),
    ShowCommand("parameters", "Show parameters for this model", Repl._show_parameters),
    ShowCommand("system", "Show system message", Repl._show_system),
    ShowCommand("template", "Show prompt template", Repl._show_template),
)

_BY_NAME = {name: c for c in COMMANDS for name in c.names}
_SET_BY_NAME = {c.name: c for c in SET_COMMANDS}
_SHOW_BY_NAME = {c.name: c for c in SHOW_COMMANDS}


def _help(rows: list[tuple[str, str]], width: int, tail: str = "") -> str:
    """Ollama's help layout: a heading, one indented line per row, a blank line."""
    return ("Available Commands:\n" + "".join(f"  {u:<{width}}{s}\n" for u, s in rows) + "\n"
            + tail)


USAGE = _help([(c.usage, c.summary) for c in COMMANDS if c.usage]
              + [("/? shortcuts", "Help for keyboard shortcuts")], 16,
              'Use """ to begin a multi-line message.\n\n')
USAGE_SET = _help([(c.usage, c.summary) for c in SET_COMMANDS], 23)
USAGE_SHOW = _help([(f"/show {c.name}", c.summary) for c in SHOW_COMMANDS], 19)
#: ``/? TOPIC`` and ``/help TOPIC``
HELP_TOPICS = {"set": USAGE_SET, "/set": USAGE_SET, "show": USAGE_SHOW, "/show": USAGE_SHOW,
               "shortcut": USAGE_SHORTCUTS, "shortcuts": USAGE_SHORTCUTS}


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
