"""Turn a rejected transaction or call, from any chain backend, into a ``LedgerError``.

Backends report the same revert in different shapes:

- eth-tester (the embedded chain) raises ``eth_tester.exceptions.TransactionFailed``
  with the raw revert bytes, or with their Python repr as a string; web3's
  provider then tries to decode them as ``Error(string)`` and either raises
  ``TransactionFailed("execution reverted: b'\\x1fy\\xbb...'")``, or decodes a
  custom error into a garbage string, or fails with ``OverflowError``. The
  embedded chain therefore intercepts the revert before web3 does and raises
  :class:`RawRevert` with the bytes (see ``deltaml.ledger.chain``); the string
  form is still parsed for a plain ``EthereumTesterProvider``;
- anvil and other JSON-RPC nodes make web3 raise ``ContractCustomError`` /
  ``ContractPanicError`` / ``ContractLogicError`` with ``data`` as a hex string,
  or ``Web3RPCError`` with the data inside the JSON-RPC error;
- a transaction sent with an explicit gas limit is mined with status 0 and
  nothing is raised; the ledger replays it as a call to obtain its data.

:class:`RevertDecoder` finds the raw bytes in each shape and decodes them by the
contract's ABI: a custom error becomes ``LedgerError(name, args)`` with enum
arguments as :class:`~deltaml.ledger.base.RequestStatus` / ``Role`` and addresses
checksummed; ``Error(string)`` becomes ``"Revert"`` and ``Panic(uint256)``
becomes ``"Panic"``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from typing import Any

from eth_abi import decode as abi_decode
from eth_tester.exceptions import TransactionFailed
from eth_tester.exceptions import ValidationError as TesterValidationError
from eth_utils import ValidationError as EvmValidationError
from eth_utils import keccak, to_checksum_address
from requests.exceptions import ConnectionError as RequestsConnectionError
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    Web3RPCError,
)

from deltaml.errors import LedgerError
from deltaml.ledger.base import RequestStatus, Role

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

PANIC_REASONS = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupt storage byte array",
    0x31: "pop from an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function",
}


class RawRevert(Exception):
    """Revert data as a backend produced it, not yet decoded.

    Attributes
    ----------
    data:
        The raw revert bytes, or ``None`` when the backend gave only a message.
    reason:
        That message.
    """

    def __init__(self, data: bytes | None, reason: str = "") -> None:
        self.data = data
        self.reason = reason
        super().__init__(reason or ("0x" + data.hex() if data is not None else "reverted"))

    @classmethod
    def from_tester(cls, exc: BaseException) -> RawRevert:
        """From eth-tester's ``TransactionFailed`` (bytes, a repr of bytes, or text)."""
        first: object = exc.args[0] if exc.args else ""
        if isinstance(first, BaseException):
            first = first.args[0] if first.args else ""
        found = _from_tester_message(first)
        if isinstance(found, bytes):
            return cls(found)
        return cls(None, found)


_ENUMS: dict[str, type[RequestStatus] | type[Role]] = {
    "Status": RequestStatus,
    "Role": Role,
}


def _abi_type(param: Mapping[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _enum_for(param: Mapping[str, Any]) -> type[RequestStatus] | type[Role] | None:
    internal = str(param.get("internalType", ""))
    if not internal.startswith("enum "):
        return None
    return _ENUMS.get(internal.rsplit(".", 1)[-1])


class _ErrorSpec:
    def __init__(self, entry: Mapping[str, Any]) -> None:
        self.name = str(entry["name"])
        self.inputs = list(entry.get("inputs", []))
        self.types = [_abi_type(p) for p in self.inputs]
        self.selector = keccak(text=f"{self.name}({','.join(self.types)})")[:4]

    def decode(self, payload: bytes) -> tuple[object, ...]:
        values = abi_decode(self.types, payload)
        out: list[object] = []
        for param, kind, value in zip(self.inputs, self.types, values, strict=True):
            enum = _enum_for(param)
            if enum is not None:
                out.append(enum(value) if value in enum._value2member_map_ else value)
            elif kind == "address":
                out.append(to_checksum_address(value))
            else:
                out.append(value)
        return tuple(out)


class RevertDecoder:
    """Decodes revert data by the custom errors of one or more ABIs.

    Parameters
    ----------
    abis:
        Contract ABIs whose ``error`` entries to recognise (a call may revert
        inside another contract, so a test passes its attacker's ABI too).
    """

    def __init__(self, abis: Iterable[Iterable[Mapping[str, Any]]]) -> None:
        self._specs: dict[bytes, _ErrorSpec] = {}
        for abi in abis:
            for entry in abi:
                if entry.get("type") == "error":
                    spec = _ErrorSpec(entry)
                    self._specs.setdefault(spec.selector, spec)

    def decode(self, data: bytes) -> LedgerError:
        """The ``LedgerError`` for raw revert ``data``."""
        if not data:
            return LedgerError("Revert", (), "reverted without a reason")
        selector, payload = data[:4], data[4:]
        try:
            if selector == ERROR_STRING_SELECTOR:
                (reason,) = abi_decode(["string"], payload)
                return LedgerError("Revert", (reason,), f"reverted: {reason}")
            if selector == PANIC_SELECTOR:
                (code,) = abi_decode(["uint256"], payload)
                meaning = PANIC_REASONS.get(code, "unknown panic code")
                return LedgerError("Panic", (code,), f"Panic(0x{code:02x}): {meaning}")
            spec = self._specs.get(selector)
            if spec is not None:
                return LedgerError(spec.name, spec.decode(payload))
        except Exception as exc:  # malformed payload: keep the raw data
            return LedgerError("Unknown", ("0x" + data.hex(),), f"undecodable revert data: {exc}")
        return LedgerError("Unknown", ("0x" + data.hex(),), f"unknown revert 0x{data.hex()}")

    def from_exception(self, exc: BaseException) -> LedgerError | None:
        """The ``LedgerError`` for an exception a backend raised, or ``None``.

        ``None`` means the exception is not a rejection by the chain (a bug, a
        wrong argument type): the caller lets it propagate unchanged.
        """
        found = _revert_payload(exc)
        if found is None:
            return _transport_error(exc)
        if isinstance(found, bytes):
            return self.decode(found)
        return LedgerError("Revert", (found,), f"reverted: {found}")


def _hex_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return None
    return None


def _from_tester_message(message: object) -> bytes | str:
    """eth-tester: ``"execution reverted: b'...'"``, bare ``"execution reverted"``,
    or a plain reason string."""
    if isinstance(message, bytes | bytearray):
        return bytes(message)
    text = str(message)
    prefix = "execution reverted"
    rest = text[len(prefix) :].lstrip(": ").strip() if text.startswith(prefix) else text
    if not rest:
        return b""
    if rest[:2] in ("b'", 'b"'):
        try:
            value = ast.literal_eval(rest)
        except (ValueError, SyntaxError):
            return rest
        if isinstance(value, bytes):
            return value
    raw = _hex_bytes(rest)
    return raw if raw is not None else rest


def _revert_payload(exc: BaseException) -> bytes | str | None:
    """Raw revert bytes (or a reason string) carried by ``exc``, if it is a revert."""
    if isinstance(exc, RawRevert):
        return exc.data if exc.data is not None else exc.reason
    if isinstance(exc, TransactionFailed):
        return _from_tester_message(exc.args[0] if exc.args else "")
    if isinstance(exc, ContractLogicError):
        data = exc.data
        if isinstance(data, Mapping):
            data = data.get("data")
        raw = _hex_bytes(data)
        if raw is not None:
            return raw
        message = str(exc.message or "")
        return _from_tester_message(message) if message else b""
    if isinstance(exc, Web3RPCError):
        error: Any = (exc.rpc_response or {}).get("error") or {}
        data = error.get("data") if isinstance(error, Mapping) else None
        if isinstance(data, Mapping):
            data = data.get("data")
        raw = _hex_bytes(data)
        message = str(error.get("message", "")) if isinstance(error, Mapping) else ""
        if raw is not None and "revert" in message.lower():
            return raw
        if message.startswith("execution reverted"):
            return _from_tester_message(message)
    return None


def _transport_error(exc: BaseException) -> LedgerError | None:
    """Failures of the chain or its connection that are not reverts."""
    if isinstance(exc, Web3RPCError):
        error: Any = (exc.rpc_response or {}).get("error") or {}
        message = str(error.get("message", exc)) if isinstance(error, Mapping) else str(exc)
        return LedgerError("Rejected", (message,), f"the node rejected the request: {message}")
    if isinstance(exc, TimeExhausted):
        return LedgerError("Timeout", (), f"transaction not mined in time: {exc}")
    if isinstance(exc, ProviderConnectionError | ConnectionError):
        return LedgerError("ChainUnreachable", (), f"cannot reach the chain: {exc}")
    if isinstance(exc, RequestsConnectionError):
        return LedgerError("ChainUnreachable", (), f"cannot reach the chain: {exc}")
    # The embedded chain validates a transaction before running it (balance,
    # nonce, gas) and raises these instead of a JSON-RPC error.
    if isinstance(exc, EvmValidationError | TesterValidationError):
        return LedgerError("Rejected", (str(exc),), f"the chain rejected the transaction: {exc}")
    return None
