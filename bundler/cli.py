"""``llmcrate bundle build|inspect|verify``: thin click commands over :mod:`bundler.pack` and
:mod:`runtime.bundle`."""
from __future__ import annotations

from pathlib import Path

import click

from runtime.bundle.archive import read_bundle_json
from runtime.bundle.verify import verify_bundle
from runtime.config import load_settings


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

    from bundler.pack import build_bundle, parse_size
    from bundler.spec import load_spec
    from runtime.models.store import Store
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
    meta = result.bundle
    click.echo(f"{len(meta.files) + 1} files, {total / 1e6:.1f} MB, "
               f"{len(meta.models)} model(s), runtimes: {', '.join(meta.runtimes or {})}", err=True)


@bundle.command()
@click.argument("path", metavar="BUNDLE", type=click.Path(path_type=Path))
@click.option("--files", is_flag=True, help="List every file with its size.")
def inspect(path: Path, files: bool) -> None:
    """Show what a bundle holds (reads only bundle.json)."""
    meta = read_bundle_json(path)
    tool = (meta.tool or {}).get("version", "?")
    click.echo(f"{meta.name} {meta.version}  (llmcrate {tool}, {meta.created_iso or '?'})")
    click.echo(f"platform  {meta.platform or '?'}  glibc >= {'.'.join(map(str, meta.glibc_min or ()))}")
    click.echo(f"python    {', '.join(meta.python or [])}")
    click.echo("runtimes  " + ", ".join(f"{n} ({f.get('source', '?')})" for n, f in (meta.runtimes or {}).items()))
    click.echo("models")
    for name, m in meta.models.items():
        click.echo(f"  {name:<40} {(m.digest or '')[7:19]:<12}  {(m.size or 0) / 1e6:>10.1f} MB")
    total = sum(e.size for e in meta.files.values())
    click.echo(f"{len(meta.files)} files, {total / 1e6:.1f} MB")
    if files:
        for rel, e in meta.files.items():
            click.echo(f"  {e.size:>12}  {rel}")


@bundle.command()
@click.argument("path", metavar="BUNDLE", type=click.Path(path_type=Path))
def verify(path: Path) -> None:
    """Check every file of a bundle (tar, volumes or extracted folder) against its sha256."""
    from runtime.progress import StatusPrinter

    bar = StatusPrinter()  # a progress bar on a terminal; quiet in logs
    try:
        rep = verify_bundle(path, progress=bar if bar.bars_on else None)
    finally:
        bar.close()
    click.echo(f"OK: {rep.name} {rep.version}: {rep.files} files, {rep.bytes / 1e6:.1f} MB, "
               f"{len(rep.models)} model(s) verified")


@click.command()
@click.argument("bundle_path", metavar="BUNDLE", required=False, type=click.Path(path_type=Path))
@click.option("-i", "--inventory", type=click.Path(path_type=Path), help="Ansible inventory of the hosts.")
@click.option("--serial", metavar="N|N%", help="Rolling upgrade: hosts per batch (default all at once).")
@click.option("--max-fail-percentage", type=click.IntRange(0, 100),
              help="Stop when more than this share of a batch failed (a batch failing whole always stops).")
@click.option("--check", is_flag=True, help="Show what would change; change nothing.")
@click.option("--forks", type=click.IntRange(1, 1000), help="Hosts worked on in parallel (Ansible's default 5).")
@click.option("--limit", metavar="PATTERN", help="Only the hosts matching this Ansible pattern.")
@click.option("-q", "--quiet", is_flag=True, help="Do not show Ansible's output, only the report.")
@click.option("--emit", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Write the playbook (role + site.yml; bundle-vars.yml for BUNDLE) to DIR and stop.")
@click.option("--balancer", type=click.Choice(["haproxy"]),
              help="Write a load balancer config for the inventory's hosts and stop.")
@click.option("--bind", default="0.0.0.0:11434", show_default=True, help="The balancer's listening ADDR:PORT.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Where --balancer writes (default stdout).")
def deploy(bundle_path: Path | None, inventory: Path | None, serial: str | None,
           max_fail_percentage: int | None, check: bool, forks: int | None, limit: str | None,
           quiet: bool, emit: Path | None, balancer: str | None, bind: str, output: Path | None) -> None:
    """Deploy BUNDLE to the hosts of an Ansible inventory (needs llmcrate[fleet]).

    Per host: copy the bundle only when the host lacks it, verify it there, install it, restart
    the server, wait until it serves the bundle's models; then one report line per host."""
    from bundler import deploy as fleet
    from runtime.errors import DeployError

    if emit is not None:
        facts = fleet.bundle_facts(bundle_path) if bundle_path else None
        for p in fleet.emit_playbook(emit, facts=facts):
            click.echo(str(p))
        return
    if inventory is None:
        raise click.UsageError("-i/--inventory is required (except with --emit)")
    if balancer is not None:
        from bundler.balancer import balancer_config

        text = balancer_config(inventory, kind=balancer, bind=bind, limit=limit)  # type: ignore[arg-type]
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text)
            click.echo(str(output), err=True)
        return
    if bundle_path is None:
        raise click.UsageError("BUNDLE is required")
    result = fleet.deploy(bundle_path, inventory=inventory, serial=serial,
                          max_fail_percentage=max_fail_percentage, check=check, forks=forks, limit=limit,
                          on_line=None if quiet else (lambda line: click.echo(line, err=True)))
    from runtime.format import table

    rows = [[h.host, h.result, h.bundle, h.previous or "-", h.runtime or "-", ", ".join(h.models) or "-",
             "yes" if h.copied else ("would" if h.would_copy and check else "no"), f"{h.seconds:.1f}s"]
            for h in result.hosts]
    click.echo(table(rows, header=["HOST", "RESULT", "BUNDLE", "PREVIOUS", "RUNTIME", "MODELS",
                                   "COPIED", "TIME"]))
    for h in result.hosts:
        if not h.ok:
            click.echo(f"{h.host}: {h.failed_task + ': ' if h.failed_task else ''}{h.error}")
    bad = [h.host for h in result.hosts if not h.ok]
    if bad or not result.hosts:
        raise DeployError(f"{len(bad)} of {len(result.hosts)} host(s) not deployed: {', '.join(bad)}")
