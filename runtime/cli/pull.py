"""``llmcrate pull``: a reference resolved by :mod:`runtime.transfer.sources` (Ollama registries here;
``hf.co/…`` and ``hf://…`` through the Hugging Face puller bundler registers on the online host)."""
from __future__ import annotations

import click

from runtime.cli.backend import open_backend
from runtime.config import load_settings
from runtime.progress import StatusPrinter
from runtime.transfer import sources
from runtime.transfer.download import PullSettings, parse_rate


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
    ref = sources.resolve(model)
    registry = ref.source == sources.OLLAMA
    if registry and revision:
        raise click.UsageError("--revision applies to Hugging Face pulls")
    if not registry and (insecure or parts or limit_rate):
        raise click.UsageError("--insecure, --parts and --limit-rate apply to registry pulls")
    tuned = bool(parts or limit_rate)      # the server would pull with its own settings
    settings = PullSettings.from_env(max_parts=parts, bandwidth_limit=parse_rate(limit_rate)
                                     if limit_rate else None) if tuned else None
    options = sources.PullOptions(insecure=insecure, revision=revision, settings=settings)
    here = not registry or tuned
    printer = StatusPrinter()
    try:
        with open_backend(load_settings(), prefer="store" if here else "server") as backend:
            backend.pull(ref, options=options, progress=printer)
    finally:
        printer.close()
