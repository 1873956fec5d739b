"""``list``, ``show``, ``create``, ``cp``, ``rm``: through the server when one answers at
OLLAMA_HOST, on the local store (OLLAMA_MODELS) otherwise (:mod:`runtime.cli.backend`)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from runtime.cli.backend import open_backend
from runtime.config import load_settings
from runtime.format import human_bytes, human_time, table


@click.command("list")
def list_cmd() -> None:
    """List models."""
    with open_backend(load_settings()) as backend:
        rows = [[m.name, m.short_id, human_bytes(m.size), human_time(m.modified)]
                for m in backend.list_models()]
    click.echo(table(rows, header=["NAME", "ID", "SIZE", "MODIFIED"]))


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
    with open_backend(load_settings()) as backend:
        body = backend.show(model, verbose=verbose)
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
        from runtime.models.gguf_info import human_number

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
    from runtime.models.modelfile import parse_modelfile
    from runtime.models.names import parse_name

    parse_name(name)  # a bad name fails before any work
    path = Path(modelfile)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise click.ClickException(f"{modelfile}: no such file (give the Modelfile with -f)") \
            from None
    mf = parse_modelfile(data, path=str(path))
    with open_backend(load_settings()) as backend:
        backend.create(name, mf, base_dir=path.resolve().parent,
                       progress=lambda e: click.echo(e.status, err=True))


@click.command()
@click.argument("source")
@click.argument("destination")
def cp(source: str, destination: str) -> None:
    """Copy a model."""
    with open_backend(load_settings()) as backend:
        backend.copy(source, destination)
    click.echo(f"copied '{source}' to '{destination}'")


@click.command()
@click.argument("models", nargs=-1, required=True)
def rm(models: tuple[str, ...]) -> None:
    """Remove one or more models."""
    with open_backend(load_settings()) as backend:
        for m in models:
            backend.delete(m)
            click.echo(f"deleted '{m}'")
    sys.stdout.flush()
