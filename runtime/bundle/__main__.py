"""``python3 -m runtime.bundle COMMAND ...``: the bundle steps ``install.sh`` runs on the target.

    python3 -m runtime.bundle verify BUNDLE [--store MODELS_DIR]
    python3 -m runtime.bundle preflight BUNDLE_DIR --prefix P --models-dir M --host H:P
    python3 -m runtime.bundle register BUNDLE_DIR/models MODELS_DIR --journal J
    python3 -m runtime.bundle rollback --journal J
    python3 -m runtime.bundle recover --lib PREFIX/lib/llmcrate --models-dir MODELS_DIR
    python3 -m runtime.bundle pip-wheel BUNDLE_DIR --python 3.11
    python3 -m runtime.bundle write-conf PATH KEY=VALUE ...
    python3 -m runtime.bundle subst SRC DST KEY=VALUE ...
    python3 -m runtime.bundle smoke --host H:P [--model NAME] [--timeout S]

One table maps each command to its arguments and handler; the handlers are the only code of
:mod:`runtime.bundle` that prints. Known errors become one ``Error: ...`` line and exit status 1.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runtime.bundle.install import pip_wheel_for, smoke_test, substitute, write_conf
from runtime.bundle.preflight import preflight
from runtime.bundle.register import recover_install, register_models, rollback_models
from runtime.bundle.verify import verify_bundle
from runtime.errors import BundleError, DigestMismatch

PROG = "python3 -m runtime.bundle"


@dataclass(frozen=True)
class Command:
    """One subcommand: how it reads its arguments and what it does (returns the exit status)."""

    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _kv(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep:
            raise BundleError(f"expected KEY=VALUE, got {it!r}")
        out[k] = v
    return out


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", type=Path)
    p.add_argument("--store", type=Path, help="store an earlier install moved the blobs into")


def _verify(args: argparse.Namespace) -> int:
    rep = verify_bundle(args.bundle, store=args.store)
    print(f"OK: {rep.name} {rep.version}: {rep.files} files, {rep.bytes / 1e6:.1f} MB, "
          f"{len(rep.models)} model(s) verified")
    return 0


def _preflight_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", type=Path)
    p.add_argument("--prefix", type=Path, required=True)
    p.add_argument("--models-dir", type=Path, required=True)
    p.add_argument("--host", required=True)


def _preflight(args: argparse.Namespace) -> int:
    from runtime.config import parse_host

    addr = parse_host(args.host)
    checks = preflight(args.bundle, prefix=args.prefix, models_dir=args.models_dir,
                       host=addr.host, port=addr.port)
    bad = False
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.fatal else "warn")
        print(f"  [{mark}] {c.name:<14} {c.detail}")
        bad = bad or (c.fatal and not c.ok)
    return 1 if bad else 0


def _register_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--journal", type=Path)


def _register(args: argparse.Namespace) -> int:
    for rel in register_models(args.src, args.dst, journal=args.journal):
        print(f"  model {rel.split('manifests/', 1)[-1]}")
    return 0


def _rollback_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--journal", type=Path, required=True)


def _rollback(args: argparse.Namespace) -> int:
    rollback_models(args.journal)
    return 0


def _recover_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lib", type=Path, required=True)
    p.add_argument("--models-dir", type=Path)


def _recover(args: argparse.Namespace) -> int:
    for msg in recover_install(args.lib, args.models_dir):
        print(f"  {msg}")
    return 0


def _pip_wheel_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", type=Path)
    p.add_argument("--python", required=True)


def _pip_wheel(args: argparse.Namespace) -> int:
    print(pip_wheel_for(args.bundle, args.python))
    return 0


def _write_conf_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path)
    p.add_argument("values", nargs="*")


def _write_conf(args: argparse.Namespace) -> int:
    write_conf(args.path, _kv(args.values))
    return 0


def _subst_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("values", nargs="*")


def _subst(args: argparse.Namespace) -> int:
    substitute(args.src, args.dst, _kv(args.values))
    return 0


def _smoke_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", required=True)
    p.add_argument("--model", default="")
    p.add_argument("--timeout", type=float, default=120.0)


def _smoke(args: argparse.Namespace) -> int:
    print(f"  server {smoke_test(args.host, args.model, timeout=args.timeout)} answered")
    return 0


COMMANDS: dict[str, Command] = {
    "verify": Command(_verify_args, _verify),
    "preflight": Command(_preflight_args, _preflight),
    "register": Command(_register_args, _register),
    "rollback": Command(_rollback_args, _rollback),
    "recover": Command(_recover_args, _recover),
    "pip-wheel": Command(_pip_wheel_args, _pip_wheel),
    "write-conf": Command(_write_conf_args, _write_conf),
    "subst": Command(_subst_args, _subst),
    "smoke": Command(_smoke_args, _smoke),
}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=PROG)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, command in COMMANDS.items():
        command.arguments(sub.add_parser(name))
    args = ap.parse_args(argv)
    try:
        return COMMANDS[args.cmd].run(args)
    except (BundleError, DigestMismatch, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
