"""What the ``deltaml`` commands share: argument types, exit codes, the chain options."""

from __future__ import annotations

import argparse

EXIT_USAGE = 2
EXIT_ERROR = 1
#: ``deltaml verify``: the transcript was read, and some check failed.
EXIT_NOT_VERIFIED = 3


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def wei(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of wei, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def chain_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--chain-url",
        required=required,
        metavar="URL",
        help="Ethereum JSON-RPC node holding the request: check the transcript against it",
    )
    p.add_argument(
        "--request-id",
        required=required,
        type=positive_int,
        metavar="N",
        help="the request's id on the contract",
    )
    p.add_argument(
        "--contract",
        metavar="ADDRESS",
        help="the Marketplace contract (default: the one the transcript's final record names)",
    )
