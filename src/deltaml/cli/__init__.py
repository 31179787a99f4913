"""The ``deltaml`` command: thin — parses, builds settings, calls in.

One module per command group: :mod:`.simulate` (``simulate`` and its report in
:mod:`.report`), :mod:`.verify` (``verify``, ``arbiter``); the nodes' commands
(``aggregator|owner|buyer|chain``, ``demo``) come from
:mod:`deltaml.services.commands`. :func:`main` is the entry point.

Errors a user can cause (bad data, bad options, a missing or malformed file) end
with one line on stderr and exit code 1, never a traceback. ``deltaml verify``
exits 0 when every check passes and 3 when any fails, naming each.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from deltaml import __version__
from deltaml.cli import db, simulate, verify
from deltaml.cli.common import EXIT_ERROR, EXIT_NOT_VERIFIED, EXIT_USAGE
from deltaml.cli.simulate import RUNS_DIR
from deltaml.errors import DeltaMLError

__all__ = ["EXIT_ERROR", "EXIT_NOT_VERIFIED", "EXIT_USAGE", "RUNS_DIR", "build_parser", "main"]

log = logging.getLogger("deltaml")

#: The commands this package runs itself (the others: :mod:`deltaml.services.commands`).
_OWN: dict[str, Callable[[argparse.Namespace], int]] = {
    "simulate": simulate.run,
    "verify": verify.run_verify,
    "arbiter": verify.run_arbiter,
    "db": db.run,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deltaml",
        description="DeltaML: models trained on data the buyer never sees.",
    )
    parser.add_argument("--version", action="version", version=f"deltaml {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log protocol steps to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    simulate.add_parser(sub)
    verify.add_parsers(sub)
    db.add_parser(sub)

    from deltaml.services.commands import add_commands

    add_commands(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    own = _OWN.get(args.command)
    if own is not None:
        return own(args)
    from deltaml.services.commands import run_command

    return run_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return _run(args)
    except DeltaMLError as exc:
        print(f"deltaml {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"deltaml {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (``| head``): say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
