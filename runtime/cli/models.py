"""``list``, ``show``, ``create``, ``cp``, ``rm``: through the server when one answers at
OLLAMA_HOST, on the local store (OLLAMA_MODELS) otherwise. The logic lives in the library."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from runtime.config import load_settings
from runtime.format import human_bytes, human_time, table
from runtime.store import Store


def _store() -> Store:
    return Store(load_settings().models_dir)


def _client() -> Any | None:
    """A client for the running server, or None when nothing answers (use the local store)."""
    from runtime.client import connect

    return connect(load_settings())


@click.command("list")
def list_cmd() -> None:
    """List models."""
    client = _client()
    if client is not None:
        models = client.list()
        rows = [[m["name"], m["digest"][:12], human_bytes(int(m["size"])),
                 human_time(_parse_time(m.get("modified_at")))] for m in models]
    else:
        rows = [[e.name.display, e.manifest.short_id, human_bytes(e.size), human_time(e.modified)]
                for e in _store().list_models()]
    click.echo(table(rows, header=["NAME", "ID", "SIZE", "MODIFIED"]))


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@click.command()
@click.argument("model")
@click.option("--license", "show_license", is_flag=True, help="Show license of a model")
@click.option("--modelfile", "show_modelfile", is_flag=True, help="Show Modelfile of a model")
@click.option("--parameters", "show_parameters", is_flag=True, help="Show parameters of a model")
@click.option("--template", "show_template", is_flag=True, help="Show template of a model")
@click.option("--system", "show_system", is_flag=True, help="Show system message of a model")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed model information")
def show(model: str, show_license: bool, show_modelfile: bool, show_parameters: bool,
         show_template: bool, show_system: bool, verbose: bool) -> None:
    """Show information for a model."""
    flags = [show_license, show_modelfile, show_parameters, show_template, show_system]
    if sum(flags) > 1:
        raise click.UsageError("only one of '--license', '--modelfile', '--parameters', "
                               "'--system', or '--template' can be specified")
    client = _client()
    if client is not None:
        body = client.show(model, verbose=verbose)
    else:
        from runtime.show import show_model

        body = show_model(_store(), model, verbose=verbose)
    if show_license:
        click.echo(body.get("license", ""))
    elif show_modelfile:
        click.echo(body.get("modelfile", ""))
    elif show_parameters:
        click.echo(body.get("parameters", ""))
    elif show_template:
        click.echo(body.get("template", ""))
    elif show_system:
        click.echo(body.get("system", ""))
    else:
        click.echo(render_show(body, verbose=verbose))


def render_show(body: dict[str, Any], *, verbose: bool = False) -> str:
    """The ``ollama show MODEL`` block: Model, Projector, Capabilities, Parameters, System,
    License."""
    d = body.get("details") or {}
    mi = body.get("model_info") or {}
    arch = mi.get("general.architecture") or d.get("family", "")
    rows: list[tuple[str, str]] = [("architecture", str(arch)),
                                   ("parameters", str(d.get("parameter_size", "")))]
    for key, label in (("context_length", "context length"),
                       ("embedding_length", "embedding length")):
        v = mi.get(f"{arch}.{key}")
        if v is not None:
            rows.append((label, str(v)))
    rows.append(("quantization", str(d.get("quantization_level", ""))))
    out = ["  Model"] + [f"    {k:<20}{v}" for k, v in rows] + [""]
    pi = body.get("projector_info") or {}
    if pi:
        from runtime.gguf_info import human_number

        parch = str(pi.get("general.architecture", ""))
        prow = [("architecture", parch)]
        if isinstance(pi.get("general.parameter_count"), (int, float)):
            prow.append(("parameters", human_number(int(pi["general.parameter_count"]))))
        for key, label in (("embedding_length", "embedding length"),
                           ("projection_dim", "dimensions")):
            v = pi.get(f"{parch}.vision.{key}")
            if v is not None:
                prow.append((label, str(v)))
        out += ["  Projector"] + [f"    {k:<20}{v}" for k, v in prow] + [""]
    caps = body.get("capabilities") or []
    if caps:
        out += ["  Capabilities"] + [f"    {c}" for c in caps] + [""]
    params = body.get("parameters")
    if params:
        out.append("  Parameters")
        for line in params.splitlines():
            k, _, v = line.partition(" ")
            out.append(f"    {k:<20}{v.strip()}")
        out.append("")
    if body.get("system"):
        out += ["  System"] + [f"    {x}" for x in body["system"].strip().splitlines()[:2]] + [""]
    if body.get("license"):
        out += ["  License"] + [f"    {x}" for x in body["license"].strip().splitlines()[:2]] + [""]
    if verbose and mi:
        out += ["  Metadata"] + [f"    {k:<40}{v}" for k, v in sorted(mi.items())
                                 if v is not None] + [""]
    return "\n".join(out)


@click.command()
@click.argument("name")
@click.option("-f", "--file", "modelfile", default="Modelfile", show_default=True,
              type=click.Path(dir_okay=False), help="Name of the Modelfile")
def create(name: str, modelfile: str) -> None:
    """Create a model from a Modelfile."""
    from runtime.modelfile import parse_modelfile
    from runtime.names import parse_name

    parse_name(name)  # a bad name fails before any work
    path = Path(modelfile)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise click.ClickException(f"{modelfile}: no such file (give the Modelfile with -f)") \
            from None
    mf = parse_modelfile(data, path=str(path))
    base_dir = path.resolve().parent
    client = _client()
    if client is None:
        from runtime.create import create_model

        create_model(_store(), name, mf, base_dir=base_dir,
                     progress=lambda e: click.echo(e.status, err=True))
        return
    # Through the server, as `ollama create` does: upload local files as blobs, then /api/create.
    from runtime.create import check_template, resolve_sources
    from runtime.gguf_info import check_magic

    check_template(mf.template)
    for src in resolve_sources(mf, base_dir).files:
        check_magic(src)  # a bad file fails here, before gigabytes travel
    for status in client.create_from_modelfile(name, mf, base_dir=base_dir):
        click.echo(status, err=True)


@click.command()
@click.argument("source")
@click.argument("destination")
def cp(source: str, destination: str) -> None:
    """Copy a model."""
    client = _client()
    if client is not None:
        client.copy(source, destination)
    else:
        _store().copy(source, destination)
    click.echo(f"copied '{source}' to '{destination}'")


@click.command()
@click.argument("models", nargs=-1, required=True)
def rm(models: tuple[str, ...]) -> None:
    """Remove one or more models."""
    client = _client()
    store = None if client is not None else _store()
    for m in models:
        if client is not None:
            client.delete(m)
        else:
            assert store is not None
            store.delete(m)
        click.echo(f"deleted '{m}'")
    sys.stdout.flush()
