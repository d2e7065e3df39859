"""The ``jaxks`` command line: a thin dispatcher.

Each sub-command lives in its own module exposing ``register(subparsers)``, which adds an
``argparse`` sub-parser whose ``func`` attribute runs the command and returns an exit code.
No computation happens here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that contribute sub-commands (each defines ``register(subparsers)``).
COMMAND_MODULES = (
    "jaxks.commands.scf",
    "jaxks.commands.demo",
    "jaxks.commands.train",
    "jaxks.commands.data",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxks", description="Differentiable Kohn-Sham DFT in JAX (atomic units inside; "
        "xyz input in Angstrom).")
    from jaxks import __version__
    parser.add_argument("--version", action="version", version=f"jaxks {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from jaxks.system import InputError
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"jaxks: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxks: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
