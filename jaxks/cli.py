"""The ``jaxks`` command line: a thin dispatcher.

Each sub-command lives in its own module exposing ``register(subparsers)``, which adds an
``argparse`` sub-parser whose ``func`` attribute runs the command and returns an exit code.
No computation happens here.
"""

from __future__ import annotations

import argparse
import importlib
import os
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


#: Sub-commands that end their process with ``os._exit`` (see :func:`entry`): they write their
#: files with context managers and need nothing from the interpreter's teardown.
FAST_EXIT_COMMANDS = ("scf",)


def entry() -> None:
    """The process entry point (the ``jaxks`` script, ``python -m jaxks.cli``): :func:`main`.

    ``jaxks scf`` uses jaxks's executable cache (:mod:`jaxks.compile_cache`: the SCF loop an
    earlier process compiled is loaded without tracing), then flushes its output and leaves
    with ``os._exit``, skipping the interpreter's teardown: with jaxlib 0.10.1 that teardown
    sometimes aborts ("terminate called without an active exception", exit status 134) when
    the process ends within moments of running a loaded executable (4 of 20 second runs of
    ``jaxks scf`` on water; 0 of 15 with 1.5 s more before exiting; 0 of 20 with os._exit),
    and it only costs time.
    """
    fast = sys.argv[1:2] and sys.argv[1] in FAST_EXIT_COMMANDS
    if fast:
        from jaxks.compile_cache import enable_executable_cache

        enable_executable_cache()  # safe here: this process skips the teardown
    try:
        code = main()
    except SystemExit as err:  # argparse: --help, usage errors
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 2)
        if not fast:
            raise
    if not fast:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
