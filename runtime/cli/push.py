"""``llmcrate push``: a model from the store to its registry (an internal registry or mirror)."""
from __future__ import annotations

import click

from runtime.config import load_settings
from runtime.progress import ProgressEvent, StatusPrinter
from runtime.store import Store


@click.command()
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use an insecure registry (plain http)")
def push(model: str, insecure: bool) -> None:
    """Push a model to a registry.

    The registry is the host part of the name (copy a model to e.g.
    10.0.0.5:5000/team/model:tag first). Goes through the running server, as `ollama push`
    does; with no server, it runs here on OLLAMA_MODELS."""
    from runtime.client import connect
    from runtime.names import parse_name

    parse_name(model)   # a bad name fails before any work
    settings = load_settings()
    printer = StatusPrinter()
    try:
        client = connect(settings)
        if client is not None:
            try:
                for obj in client.push(model, insecure=insecure):
                    printer(ProgressEvent.from_json(obj))
            finally:
                client.close()
            return
        from runtime.push import push_model

        push_model(Store(settings.models_dir), model, insecure=insecure, progress=printer)
    finally:
        printer.close()
