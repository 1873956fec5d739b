"""``llmcrate push``: a model from the store to its registry (an internal registry or mirror)."""
from __future__ import annotations

import click

from runtime.cli.backend import open_backend
from runtime.config import load_settings
from runtime.progress import StatusPrinter


@click.command()
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use an insecure registry (plain http)")
def push(model: str, insecure: bool) -> None:
    """Push a model to a registry.

    The registry is the host part of the name (copy a model to e.g.
    10.0.0.5:5000/team/model:tag first). Goes through the running server, as `ollama push`
    does; with no server, it runs here on OLLAMA_MODELS."""
    from runtime.models.names import parse_name

    parse_name(model)   # a bad name fails before any work
    printer = StatusPrinter()
    try:
        with open_backend(load_settings()) as backend:
            backend.push(model, insecure=insecure, progress=printer)
    finally:
        printer.close()
