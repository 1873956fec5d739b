"""``llmcrate pull``: registry names through :mod:`runtime.registry`; ``hf.co/…`` and ``hf://…``
through :mod:`bundler.huggingface` (online host only, imported lazily)."""
from __future__ import annotations

import click

from runtime.config import load_settings
from runtime.download import PullSettings, parse_rate
from runtime.errors import LlmcrateError
from runtime.progress import StatusPrinter
from runtime.store import Store

_HF_PREFIXES = ("hf.co/", "huggingface.co/", "hf://")


@click.command()
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use an insecure registry (plain http)")
@click.option("--revision", default=None, help="Hugging Face revision (branch, tag or commit)")
@click.option("--parts", type=click.IntRange(1, 64), default=None,
              help="Parallel ranged parts per blob (default 16)")
@click.option("--limit-rate", default=None, metavar="RATE",
              help="Bandwidth cap for the whole pull, e.g. 500K, 10M")
def pull(model: str, insecure: bool, revision: str | None, parts: int | None,
         limit_rate: str | None) -> None:
    """Pull a model from a registry or Hugging Face.

    Registry pulls go through the running server (as `ollama pull` does), so the model lands in
    the store the server uses; with no server, or with --parts/--limit-rate, they run here on
    OLLAMA_MODELS. Hugging Face pulls always run here (online host)."""
    settings = load_settings()
    if not model.lower().startswith(_HF_PREFIXES) and not (parts or limit_rate or revision):
        from runtime.client import connect

        client = connect(settings)
        if client is not None:
            printer = StatusPrinter()
            try:
                for event in client.pull(model, insecure=insecure):
                    printer(event)
            finally:
                printer.close()
                client.close()
            return
    store = Store(settings.models_dir)
    printer = StatusPrinter()
    try:
        if model.lower().startswith(_HF_PREFIXES):
            if insecure or parts or limit_rate:
                raise click.UsageError("--insecure, --parts and --limit-rate apply to registry pulls")
            try:
                from bundler.huggingface import pull_hf
            except ImportError as e:
                raise LlmcrateError("Hugging Face pulls need the online host's extras",
                                    hint="pip install 'llmcrate[online]' (huggingface_hub)") from e
            pull_hf(store, model, revision=revision, progress=printer)
        else:
            if revision:
                raise click.UsageError("--revision applies to Hugging Face pulls")
            from runtime.registry import pull_model

            pull_settings = PullSettings.from_env(
                max_parts=parts, bandwidth_limit=parse_rate(limit_rate) if limit_rate else None)
            pull_model(store, model, insecure=insecure, progress=printer, settings=pull_settings)
    finally:
        printer.close()
