"""``llmcrate pull``: a reference resolved by :mod:`runtime.sources` (Ollama registries here;
``hf.co/…`` and ``hf://…`` through the Hugging Face puller bundler registers on the online host)."""
from __future__ import annotations

import click

from runtime import sources
from runtime.config import load_settings
from runtime.download import PullSettings, parse_rate
from runtime.progress import StatusPrinter
from runtime.store import Store


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
    ref = sources.resolve(model)
    if ref.source == sources.OLLAMA:
        if revision:
            raise click.UsageError("--revision applies to Hugging Face pulls")
    elif insecure or parts or limit_rate:
        raise click.UsageError("--insecure, --parts and --limit-rate apply to registry pulls")
    if ref.source == sources.OLLAMA and not (parts or limit_rate):
        from runtime.client import connect
        from runtime.progress import ProgressEvent

        client = connect(settings)
        if client is not None:
            printer = StatusPrinter()
            try:
                for obj in client.pull(ref.name, insecure=insecure):
                    printer(ProgressEvent.from_json(obj))
            finally:
                printer.close()
                client.close()
            return
    pull_settings = PullSettings.from_env(
        max_parts=parts, bandwidth_limit=parse_rate(limit_rate) if limit_rate else None) \
        if ref.source == sources.OLLAMA else None
    options = sources.PullOptions(insecure=insecure, revision=revision, settings=pull_settings)
    printer = StatusPrinter()
    try:
        sources.pull(Store(settings.models_dir), ref, progress=printer, options=options)
    finally:
        printer.close()
