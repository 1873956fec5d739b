"""The interactive session of ``llmcrate run`` (like ``ollama run``): stdlib readline input,
``\"\"\"`` multi-line messages, ``/set``, ``/show``, ``/load``, ``/save``, ``/clear``, ``/list``, ``/bye``.
Ctrl-C at the prompt clears the line, Ctrl-C during a reply stops it, Ctrl-D exits."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runtime.cli.chat import (
    Json,
    Session,
    Spinner,
    WordWrapper,
    _err,
    _out,
    _request_format,
    prompt_images,
    stats_block,
    stream_reply,
)
from runtime.cli.models import render_show
from runtime.cli.server import parse_timestamp
from runtime.client import Client
from runtime.errors import (
    ImageError,
    InvalidName,
    LlmcrateError,
    ModelNotFound,
    ServerUnavailable,
)
from runtime.format import human_bytes, human_time, table
from runtime.options import coerce_parameter

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
                _out(f"Couldn't set parameter: {e}\n")
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
        self.s.vision = "vision" in (info.get("capabilities") or [])

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
        message: Json = {"role": "user", "content": text}
        if self.s.vision:
            try:
                found = prompt_images(text)
            except ImageError as e:
                _out(f"Couldn't process image: {e}\n")
                return
            message["content"] = found.text
            if found.images:
                message["images"] = found.images    # kept: later turns and /save resend them
        self.s.messages.append(message)
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
