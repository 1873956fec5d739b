"""The ``llmcrate`` command: a thin click layer over the library, with one error boundary.

Each command group lives in its own module and is registered lazily in :data:`COMMANDS`
(name -> "module:attribute"), so ``llmcrate --help`` stays fast and the target host never
imports online-only code. Commands of other packages come from the ``llmcrate.commands`` entry
point group (bundler's ``bundle`` and ``deploy``, see pyproject.toml), listed when importable;
runtime never names them.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import traceback
from typing import Any

import click

from runtime import __version__
from runtime.errors import LlmcrateError
from runtime.plugins import entry_points

#: command name -> "module:attr". Modules are imported only when the command is used.
COMMANDS: dict[str, str] = {
    "serve": "runtime.cli.server:serve",
    "run": "runtime.cli.chat:run",
    "list": "runtime.cli.models:list_cmd",
    "ls": "runtime.cli.models:list_cmd",
    "ps": "runtime.cli.server:ps",
    "stop": "runtime.cli.server:stop",
    "show": "runtime.cli.models:show",
    "create": "runtime.cli.models:create",
    "cp": "runtime.cli.models:cp",
    "rm": "runtime.cli.models:rm",
    "pull": "runtime.cli.pull:pull",
    "template": "runtime.cli.template:template",
    "push": "runtime.cli.push:push",
    "help": "runtime.cli.help:help_cmd",
}
ENTRY_POINT_GROUP = "llmcrate.commands"


def _commands() -> dict[str, str]:
    """:data:`COMMANDS` and the ``llmcrate.commands`` entry points (ours win a clash)."""
    return {**{ep.name: ep.value for ep in entry_points(ENTRY_POINT_GROUP)}, **COMMANDS}


def _debug() -> bool:
    return os.environ.get("LLMCRATE_DEBUG", "") not in ("", "0", "false")


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, target in _commands().items() if self._importable(target))

    def _importable(self, target: str) -> bool:
        module = target.split(":")[0]
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            return False

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name) or _commands().get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if _debug():
                raise
            if e.name and module.startswith(e.name):
                return None
            raise
        cmd = getattr(mod, attr, None)
        return cmd if isinstance(cmd, click.Command) else None

    def invoke(self, ctx: click.Context) -> Any:
        # The one error boundary: known errors -> one clear line, exit code != 0.
        try:
            return super().invoke(ctx)
        except LlmcrateError as e:
            if _debug():
                traceback.print_exc()
            click.echo(f"Error: {e}", err=True)
            if e.hint:
                click.echo(f"Hint: {e.hint}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("", err=True)
            ctx.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="llmcrate")
def main() -> None:
    """Large language model runner for air-gapped servers (Ollama-compatible)."""
    level = logging.DEBUG if _debug() else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    main()
