"""``llmcrate bundle build|inspect|verify``: thin click commands over :mod:`bundler.pack` and
:mod:`runtime.verify`."""
from __future__ import annotations

from pathlib import Path

import click

from runtime.config import load_settings
from runtime.verify import read_bundle_json, verify_bundle


@click.group()
def bundle() -> None:
    """Build, inspect and verify offline bundles."""


@bundle.command()
@click.argument("spec_file", metavar="SPEC.yaml", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(),
              help="Output file, or folder (an existing one, or any path ending in /, created).")
@click.option("--compress", type=click.Choice(["none", "gz", "zst"]), default="none", show_default=True,
              help="Compress the tar (weights barely compress; none is fastest).")
@click.option("--split", "split", metavar="SIZE", help="Write volumes of at most SIZE (e.g. 4G) for removable media.")
@click.option("--trust-store", is_flag=True,
              help="Do not re-hash model blobs while packing (they were verified when pulled); faster.")
def build(spec_file: Path, output: str | None, compress: str, split: str | None, trust_store: bool) -> None:
    """Build the bundle SPEC.yaml describes (pulls or creates the models the store lacks)."""
    import os

    from runtime.store import Store

    from .pack import build_bundle, parse_size
    from .spec import load_spec

    from runtime.progress import StatusPrinter

    spec = load_spec(spec_file)
    out = Path(output) if output else None
    if output and output.endswith(("/", os.sep)):      # a folder, as with cp: made if missing
        assert out is not None
        out.mkdir(parents=True, exist_ok=True)
    store = Store(load_settings().models_dir)
    bar = StatusPrinter()  # a progress bar on a terminal; quiet in logs
    try:
        result = build_bundle(spec, store=store, out=out, compression=compress,  # type: ignore[arg-type]
                              split=parse_size(split) if split else None, rehash=not trust_store,
                              progress=lambda s: click.echo(s, err=True),
                              events=bar if bar.bars_on else None)
    finally:
        bar.close()
    total = sum(p.stat().st_size for p in result.paths)
    for p in result.paths:
        click.echo(str(p))
    click.echo(f"{len(result.meta['files']) + 1} files, {total / 1e6:.1f} MB, "
               f"{len(result.meta['models'])} model(s), runtimes: {', '.join(result.meta['runtimes'])}", err=True)


@bundle.command()
@click.argument("path", metavar="BUNDLE", type=click.Path(path_type=Path))
@click.option("--files", is_flag=True, help="List every file with its size.")
def inspect(path: Path, files: bool) -> None:
    """Show what a bundle holds (reads only bundle.json)."""
    meta = read_bundle_json(path)
    click.echo(f"{meta['name']} {meta['version']}  (llmcrate {meta['tool']['version']}, {meta['created_iso']})")
    click.echo(f"platform  {meta['platform']}  glibc >= {'.'.join(map(str, meta['glibc_min']))}")
    click.echo(f"python    {', '.join(meta['python'])}")
    click.echo("runtimes  " + ", ".join(f"{n} ({f['source']})" for n, f in meta["runtimes"].items()))
    click.echo("models")
    for name, m in meta["models"].items():
        click.echo(f"  {name:<40} {m['digest'][7:19]}  {m['size'] / 1e6:>10.1f} MB")
    total = sum(e["size"] for e in meta["files"].values())
    click.echo(f"{len(meta['files'])} files, {total / 1e6:.1f} MB")
    if files:
        for rel, e in meta["files"].items():
            click.echo(f"  {e['size']:>12}  {rel}")


@bundle.command()
@click.argument("path", metavar="BUNDLE", type=click.Path(path_type=Path))
def verify(path: Path) -> None:
    """Check every file of a bundle (tar, volumes or extracted folder) against its sha256."""
    rep = verify_bundle(path)
    click.echo(f"OK: {rep.name} {rep.version}: {rep.files} files, {rep.bytes / 1e6:.1f} MB, "
               f"{len(rep.models)} model(s) verified")
