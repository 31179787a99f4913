"""One root error for the project; each subclass also inherits the matching built-in.

Services map these to HTTP status codes and the CLI maps them to exit codes and
a one-line message, both in one place each.
"""

from __future__ import annotations

from collections.abc import Sequence


class DeltaMLError(Exception):
    """Root of every error DeltaML raises on purpose."""


class DeltaMLValueError(DeltaMLError, ValueError):
    """A value is malformed or out of range (user input, a message, a setting)."""


class DeltaMLTypeError(DeltaMLError, TypeError):
    """A value has the wrong type (for example a message field)."""


class NotFoundError(DeltaMLError, LookupError):
    """What was asked for does not exist, or is not the caller's to see."""


class ForbiddenError(DeltaMLError, PermissionError):
    """The caller may not do this (not its request, not registered for the role)."""


class ConflictError(DeltaMLError, RuntimeError):
    """A well-formed call that the current state does not allow (too late, taken already)."""


class BusyError(DeltaMLError, RuntimeError):
    """Too many calls at once: the caller may try again later."""


class UnsupportedError(DeltaMLError, NotImplementedError):
    """A feature this installation lacks (for example an optional extra)."""


class KeyMismatchError(DeltaMLValueError):
    """Two encrypted values, or a value and a key, belong to different key pairs."""


class PrecisionBudgetError(DeltaMLError, OverflowError):
    """An encrypted value would exceed its precision budget: refresh it or refuse."""


class DataError(DeltaMLValueError):
    """A data set cannot be used: names the file and the problem in one line."""


class ProtocolError(DeltaMLError, RuntimeError):
    """A party received a message the protocol does not allow at this point."""


class PartyTimeout(ProtocolError):
    """Parties did not answer in time; ``parties`` names them (the others' replies are void)."""

    def __init__(self, parties: Sequence[str], seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s from {', '.join(sorted(parties))}")
        self.parties = sorted(parties)


class LedgerError(DeltaMLError, RuntimeError):
    """A chain operation failed: carries the contract's error name and arguments.

    Attributes
    ----------
    error_name:
        The Solidity custom error's name (``"NotAggregator"``), or ``"Revert"``
        for a plain revert string, or ``"Unknown"``.
    args_:
        The decoded arguments of the custom error, in declaration order.
    """

    def __init__(self, error_name: str, args_: tuple[object, ...] = (), message: str = "") -> None:
        self.error_name = error_name
        self.args_ = tuple(args_)
        text = message or f"{error_name}{self.args_ if self.args_ else ''}"
        super().__init__(text)
