"""``llmcrate help [COMMAND...]``: the help of llmcrate or of a command, as ``ollama help``."""
from __future__ import annotations

import click

from runtime.errors import LlmcrateError


@click.command(name="help")
@click.argument("command", nargs=-1)
@click.pass_context
def help_cmd(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Help about any command."""
    root = ctx.find_root()
    cmd: click.Command = root.command
    sub_ctx = root
    for name in command:
        group = cmd if isinstance(cmd, click.Group) else None
        found = group.get_command(sub_ctx, name) if group is not None else None
        if found is None:
            raise LlmcrateError(f'unknown help topic "{" ".join(command)}"',
                                hint="run 'llmcrate help' for the list of commands")
        sub_ctx = click.Context(found, info_name=name, parent=sub_ctx)
        cmd = found
    click.echo(cmd.get_help(sub_ctx))
