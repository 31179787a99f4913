"""The embedded chain as a JSON-RPC node, for processes that must share one chain.

``connect("embedded")`` gives each process its own in-memory EVM, so the parties
of ``deltaml demo`` — separate processes — could not see each other's
transactions; and anvil, the usual shared dev chain, may not be installed. This
module serves that same embedded EVM (eth-tester on py-evm, with the fixes of
:mod:`deltaml.ledger.embedded`) over HTTP JSON-RPC, so every process connects to
it as to anvil: ``connect("http://127.0.0.1:PORT")``.

Each request goes through web3's eth-tester provider *with its formatting
middleware* (JSON-RPC names and hex quantities in, eth-tester's Python values
out, and back), one request at a time under a lock: py-evm is not thread-safe.
Answers are JSON-RPC 2.0, batches included. A revert comes back as anvil reports
it — ``{"code": 3, "message": "execution reverted...", "data": "0x<revert
bytes>"}`` — so :mod:`deltaml.ledger.reverts` makes the same ``LedgerError`` of
it as of a revert on anvil or on the in-process chain. Time travel uses anvil's
``evm_increaseTime`` and ``evm_mine``, which :class:`~deltaml.ledger.chain.RpcChain`
sends.

Run it with ``python -m deltaml.ledger.node [--host 127.0.0.1] [--port 8545]``;
``--port 0`` picks a free port. The first line on stdout is
``DeltaML embedded chain listening on http://HOST:PORT``;
:class:`EmbeddedNodeProcess` starts it as a subprocess and reads that line.

This is a development chain: its ten prefunded accounts are unlocked, so anyone
who can reach the port can spend their ether. It binds 127.0.0.1 unless told
otherwise, and warns when told otherwise.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deltaml.ledger.embedded import EmbeddedChain

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8545
#: The first line the node prints on stdout, followed by its URL.
READY_PREFIX = "DeltaML embedded chain listening on "
#: Largest request body accepted (a contract deployment is ~30 kB of hex).
MAX_BODY_BYTES = 16 * 1024 * 1024

# JSON-RPC 2.0 error codes (and anvil's / geth's for a revert)
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
SERVER_ERROR = -32000
REVERT_CODE = 3

_BLOCK_METHODS = ("eth_getBlockByNumber", "eth_getBlockByHash")


class JsonRpcError(Exception):
    """A JSON-RPC error object to answer with, raised while handling a request."""

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _to_json(value: Any) -> Any:
    """eth-tester's Python values as JSON-RPC values: integers become hex
    quantities and bytes hex data, as a real node sends them (web3's HTTP
    formatters expect those)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    raise TypeError(f"cannot send a {type(value).__name__} as JSON-RPC")


def _quantity(value: object, name: str) -> int:
    """A JSON-RPC quantity parameter: a non-negative integer or its hex string."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            number = int(value, 16) if value.lower().startswith("0x") else int(value)
        except ValueError:
            number = -1
        if number >= 0:
            return number
    raise JsonRpcError(INVALID_PARAMS, f"{name} must be a non-negative integer, got {value!r}")


def _revert_error(data: bytes | None, reason: str = "") -> JsonRpcError:
    """The error anvil sends for a revert: code 3, the raw bytes as ``data``
    (what :mod:`deltaml.ledger.reverts` decodes), a readable message."""
    from eth_abi import decode as abi_decode

    from deltaml.ledger.reverts import ERROR_STRING_SELECTOR, PANIC_REASONS, PANIC_SELECTOR

    if data is not None and not reason:
        selector = data[:4]
        try:
            if selector == ERROR_STRING_SELECTOR:
                (reason,) = abi_decode(["string"], data[4:])
            elif selector == PANIC_SELECTOR:
                (code,) = abi_decode(["uint256"], data[4:])
                reason = f"panic: {PANIC_REASONS.get(code, 'unknown panic code')} (0x{code:02x})"
            elif len(data) >= 4:
                reason = f"custom error 0x{selector.hex()}"
        except Exception:  # malformed payload: the data still says it all
            reason = ""
    message = f"execution reverted: {reason}" if reason else "execution reverted"
    return JsonRpcError(REVERT_CODE, message, None if data is None else "0x" + data.hex())


class EmbeddedNode:
    """An :class:`~deltaml.ledger.embedded.EmbeddedChain` answering JSON-RPC
    request objects (no HTTP here: see :func:`make_server`).

    Parameters
    ----------
    chain:
        The chain to serve; a new one by default.
    """

    def __init__(self, chain: EmbeddedChain | None = None) -> None:
        from web3.middleware import combine_middleware

        from deltaml.ledger.embedded import EmbeddedChain

        self.chain = chain if chain is not None else EmbeddedChain()
        provider: Any = self.chain.w3.provider
        # only the provider's own middleware (JSON-RPC <-> eth-tester formats):
        # the client's web3 applies the rest (validation, gas estimates, ...)
        self._request: Callable[[str, Any], Mapping[str, Any]] = combine_middleware(
            middleware=provider._middleware,
            w3=self.chain.w3,
            provider_request_fn=provider.make_request,
        )
        self._lock = threading.Lock()
        self._time_offset_s = 0
        self._special: dict[str, Callable[[list[Any]], Any]] = {
            "evm_increaseTime": self._increase_time,
            "evm_mine": self._mine,
        }

    # ---------------------------------------------------------------- entry

    def handle_bytes(self, body: bytes) -> bytes | None:
        """The HTTP body to answer ``body`` with; ``None`` if there is nothing to
        answer (only notifications)."""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            reply: Any = _error_response(None, JsonRpcError(PARSE_ERROR, f"parse error: {exc}"))
        else:
            reply = self.handle(payload)
        return None if reply is None else json.dumps(reply, separators=(",", ":")).encode()

    def handle(self, payload: Any) -> Any:
        """The response to one request object or a batch (a list of them);
        ``None`` when only notifications (requests without an ``id``) came."""
        if isinstance(payload, list):
            if not payload:
                return _error_response(None, JsonRpcError(INVALID_REQUEST, "empty batch"))
            replies = [self._handle_one(item) for item in payload]
            answered = [r for r in replies if r is not None]
            return answered or None
        return self._handle_one(payload)

    # ------------------------------------------------------------ internals

    def _handle_one(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return _error_response(None, JsonRpcError(INVALID_REQUEST, "not a request object"))
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params", [])
        try:
            if not isinstance(method, str) or not method:
                raise JsonRpcError(INVALID_REQUEST, "the request names no method")
            if not isinstance(params, list):
                raise JsonRpcError(INVALID_PARAMS, "params must be a list")
            result = self.call(method, params)
        except JsonRpcError as error:
            response = _error_response(request_id, error)
        else:
            response = {"jsonrpc": "2.0", "id": request_id, "result": result}
        return response if "id" in request else None

    def call(self, method: str, params: list[Any]) -> Any:
        """Run one JSON-RPC method; returns its JSON result or raises
        :class:`JsonRpcError` (a revert as anvil reports it)."""
        from eth_tester.exceptions import ValidationError as TesterValidationError
        from eth_utils import ValidationError as EvmValidationError
        from web3.exceptions import ContractLogicError

        from deltaml.ledger.reverts import RawRevert

        logger.debug("%s %s", method, params)
        try:
            with self._lock:
                special = self._special.get(method)
                if special is not None:
                    return _to_json(special(params))
                response = self._request(method, params)
                if "error" in response:
                    error = response["error"]
                    if isinstance(error, Mapping):
                        code = int(error.get("code", SERVER_ERROR))
                        raise JsonRpcError(code, str(error.get("message", "")))
                    raise JsonRpcError(SERVER_ERROR, str(error))
                return _to_json(self._format_result(method, response.get("result")))
        except JsonRpcError:
            raise
        except RawRevert as exc:
            raise _revert_error(exc.data, exc.reason) from exc
        except ContractLogicError as exc:  # web3 decoded a panic before our wrapper saw it
            data = exc.data if isinstance(exc.data, str) else None
            raw = bytes.fromhex(data[2:]) if data and data.startswith("0x") else None
            raise _revert_error(raw, "" if raw is not None else str(exc.message or "")) from exc
        except (TesterValidationError, EvmValidationError) as exc:
            # a transaction the chain refuses before running it (nonce, balance, gas)
            raise JsonRpcError(SERVER_ERROR, str(exc)) from exc
        except Exception as exc:
            logger.warning("%s failed", method, exc_info=True)
            raise JsonRpcError(
                SERVER_ERROR, f"{method} failed: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _format_result(method: str, result: Any) -> Any:
        # the provider's middleware renames a block's keys but not those of the
        # full transactions in it
        if method in _BLOCK_METHODS and isinstance(result, Mapping):
            transactions = result.get("transactions")
            if (
                isinstance(transactions, list)
                and transactions
                and isinstance(transactions[0], Mapping)
            ):
                from web3.providers.eth_tester.middleware import (
                    transaction_result_formatter,
                    transaction_result_remapper,
                )

                result = dict(result)
                result["transactions"] = [
                    transaction_result_remapper(transaction_result_formatter(t))
                    for t in transactions
                ]
        return result

    def _increase_time(self, params: list[Any]) -> int:
        """anvil's ``evm_increaseTime [seconds]``: later blocks are at least that much
        later; returns the total offset so far, as anvil does. (eth-tester moves
        its clock by mining a block at the new time.)"""
        if len(params) != 1:
            raise JsonRpcError(INVALID_PARAMS, "evm_increaseTime takes [seconds]")
        seconds = _quantity(params[0], "seconds")
        self.chain.advance_time(seconds)
        self._time_offset_s += seconds
        return self._time_offset_s

    def _mine(self, params: list[Any]) -> str:
        """anvil's ``evm_mine`` (one block) or ``evm_mine [timestamp]`` (one block
        at that time); eth-tester's own ``evm_mine`` would read a timestamp as a
        number of blocks."""
        tester: Any = self.chain._tester
        if not params or params[0] is None:
            tester.mine_blocks(1)
        elif len(params) == 1 and not isinstance(params[0], Mapping):
            timestamp = _quantity(params[0], "timestamp")
            earliest = int(tester.get_block_by_number("pending")["timestamp"])
            if timestamp < earliest:
                raise JsonRpcError(
                    INVALID_PARAMS,
                    f"timestamp {timestamp} is before the next block's earliest {earliest}",
                )
            tester.time_travel(timestamp + 1)  # eth-tester mines one second earlier
        else:
            raise JsonRpcError(INVALID_PARAMS, "evm_mine takes [] or [timestamp]")
        return "0x0"


def _error_response(request_id: Any, error: JsonRpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.as_dict()}


# ---------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    """POST / with a JSON-RPC body; keep-alive, as web3's session expects."""

    protocol_version = "HTTP/1.1"
    # headers and body leave in one segment when the handler flushes, and
    # without waiting on Nagle: a round trip costs ~1 ms, not ~40
    wbufsize = -1
    disable_nagle_algorithm = True
    server: NodeServer

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        if length < 0:
            self._send(411, b'{"error":"a Content-Length header is required"}')
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would be taken for a request
            self._send(413, b'{"error":"request too large"}')
            return
        reply = self.server.node.handle_bytes(self.rfile.read(length))
        if reply is None:
            self._send(204, b"")
        else:
            self._send(200, reply)

    def do_GET(self) -> None:
        self._send(405, b'{"error":"send JSON-RPC requests with POST"}', allow="POST")

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.capitalize(), value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.address_string(), format % args)


class NodeServer(ThreadingHTTPServer):
    """An HTTP server answering JSON-RPC with an :class:`EmbeddedNode`."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        node: EmbeddedNode | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if _is_ipv6(address[0]):
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)  # bind first: a busy port fails fast
        self.tls = tls
        if tls is not None:
            # The handshake happens on each connection's handler thread (its first
            # read), so a slow client cannot hold up accepting the others.
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
        try:
            self.node = node if node is not None else EmbeddedNode()
        except BaseException:
            self.server_close()
            raise

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://[{host}]:{port}" if _is_ipv6(host) else f"{scheme}://{host}:{port}"


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    node: EmbeddedNode | None = None,
    tls: ssl.SSLContext | None = None,
) -> NodeServer:
    """Bind (but do not start) a node on ``host:port``; port 0 picks a free one
    (read it from ``server.url``). Call ``serve_forever()`` to answer requests.
    With ``tls`` (a server context holding the certificate) it answers HTTPS only."""
    return NodeServer((host, port), node, tls)


def server_tls(cert: str, key: str) -> ssl.SSLContext:
    """A server context for ``cert`` (PEM chain) and its ``key``; TLS 1.2 at least."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def main(argv: list[str] | None = None) -> int:
    """Serve an embedded chain until SIGTERM or Ctrl-C; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m deltaml.ledger.node",
        description="Serve an in-memory development chain (eth-tester on py-evm) over "
        "JSON-RPC, so that several processes share it. Its prefunded accounts are "
        "unlocked: keep it on a loopback address.",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port; 0 picks a free one (default %(default)s)",
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS: certificate chain")
    parser.add_argument("--tls-key", metavar="PEM", help="serve HTTPS: its private key")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in 0..65535, got {args.port}")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    tls = None
    if args.tls_cert:
        try:
            tls = server_tls(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"error: cannot load the TLS certificate or key: {exc}", file=sys.stderr)
            return 1
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s: %(message)s")
    if not _is_loopback(args.host):
        print(
            f"warning: serving a chain with unlocked, funded accounts on {args.host}: "
            "anyone who can reach it can spend their ether",
            file=sys.stderr,
        )
    try:
        server = make_server(args.host, args.port, tls=tls)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # leave serve_forever() in the main thread

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        print(f"{READY_PREFIX}{server.url}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
