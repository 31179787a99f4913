"""Signed HTTP requests between parties: who sent this, and is it fresh?

Every party already has an Ethereum account (it signs evidence and holds escrow),
so requests are authenticated with the same key rather than with passwords or
TLS client certificates: the receiver learns the sender's address, which is the
identity the marketplace contract and the evidence use.

A request is signed over the origin of the service it is sent to
(``scheme://host:port``, so that a signed call cannot be replayed to another
service), its method, its path with the query string exactly as sent on the wire
(percent-encoding included), the SHA-256 of its body, a timestamp and a random
nonce; the canonical text is::

    deltaml-http/2
    {origin}
    {METHOD}
    {path_and_query}
    {body_sha256_hex}
    {timestamp_int}
    {nonce}

joined by ``\\n`` and signed with EIP-191 (``personal_sign``) so that any
Ethereum tool can produce or check it. Four headers carry it:
``X-DeltaML-Address``, ``X-DeltaML-Timestamp``, ``X-DeltaML-Nonce`` and
``X-DeltaML-Signature``.

The receiver (:class:`RequestVerifier`) accepts a request only when the
signature recovers to the claimed address over one of its own origins (set by
``serve`` from the address it listens on, or ``--public-url``; a service run
in-process without them takes the scheme and ``Host`` the request arrived with),
the timestamp is within ``max_skew_seconds`` of its clock, and the address has
not used the nonce before. Nonces are remembered until the timestamp leaves the window — after that
the timestamp check alone rejects a replay — so memory is bounded by the request
rate times the window. Nonces are remembered only after the signature checks
out, so nobody can fill the store, or burn another party's nonces, without
signing.

This proves who sent a request, not that the sender may make it: authorization
(is this address the aggregator of this job?) is the services' business. The
signature does not cover headers other than its own, and responses are not
signed. Redirects are not re-signed (httpx does not follow them by default).
"""

from __future__ import annotations

import hashlib
import heapq
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import quote

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature, ValidationError
from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from deltaml.errors import DeltaMLError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

__all__ = [
    "ADDRESS_HEADER",
    "NONCE_HEADER",
    "SCHEME",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AuthError",
    "MemoryNonceStore",
    "NonceStore",
    "RequestVerifier",
    "SignedAuth",
    "canonical_request",
    "origin_of",
    "request_target",
    "sign_request",
    "signed_party",
]

#: Version tag and first line of every signed text: a signature made for anything
#: else (evidence bodies, another protocol version) never verifies as a request.
SCHEME = "deltaml-http/2"

ADDRESS_HEADER = "X-DeltaML-Address"
TIMESTAMP_HEADER = "X-DeltaML-Timestamp"
NONCE_HEADER = "X-DeltaML-Nonce"
SIGNATURE_HEADER = "X-DeltaML-Signature"
_HEADERS = (ADDRESS_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)

_METHOD = re.compile(r"[A-Z]{1,16}")
#: Printable ASCII without spaces: what an HTTP request target can hold, and no
#: newline that could shift the fields of the canonical text.
_TARGET = re.compile(r"/[\x21-\x7e]*")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[0-9a-f]{32,128}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
#: ``scheme://host:port`` in lower case (IPv6 hosts in brackets), or empty (unbound).
_ORIGIN = re.compile(
    r"(https?://[a-z0-9.\-]{1,253}:[0-9]{1,5}|https?://\[[0-9a-f:.]{2,45}\]:[0-9]{1,5})?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str | httpx.URL) -> str:
    """``scheme://host:port`` of ``url``, lower case, the port always written out."""
    u = httpx.URL(str(url))
    scheme = u.scheme.lower()
    port = u.port or _DEFAULT_PORTS.get(scheme, 0)
    host = u.host.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class AuthError(DeltaMLError):
    """A request's signature headers are missing, malformed, stale, replayed or wrong.

    The message is one line meant for the caller (services return it as the
    ``detail`` of an HTTP 401); it never contains key material.
    """


# -- signing --------------------------------------------------------------------------
def _normalize_target(path_and_query: str) -> str:
    """Drop an empty query's ``?``: servers cannot tell ``/a?`` from ``/a``."""
    return path_and_query[:-1] if path_and_query.endswith("?") else path_and_query


def canonical_request(
    method: str, path_and_query: str, body: bytes, timestamp: int, nonce: str, origin: str = ""
) -> str:
    """The text a request's signature covers (see the module docstring).

    Each field has a fixed alphabet without newlines (checked here), so the text
    determines the fields: no two requests share a canonical text.
    """
    if not _ORIGIN.fullmatch(origin):
        raise AuthError("malformed origin: expected scheme://host:port in lower case")
    method = method.upper()
    if not _METHOD.fullmatch(method):
        raise AuthError(f"malformed method {method[:20]!r}")
    target = _normalize_target(path_and_query)
    if not _TARGET.fullmatch(target):
        raise AuthError("malformed path: expected '/' then printable ASCII (percent-encoded)")
    digest = hashlib.sha256(body).hexdigest()
    return f"{SCHEME}\n{origin}\n{method}\n{target}\n{digest}\n{timestamp}\n{nonce}"


def sign_request(
    account: LocalAccount,
    method: str,
    path: str,
    body: bytes,
    *,
    now: float | None = None,
    nonce: str | None = None,
    origin: str = "",
) -> dict[str, str]:
    """The four signature headers for a request from ``account`` to ``origin``.

    ``origin`` is the target service's :func:`origin_of`; ``path`` is the path and
    query string exactly as sent (percent-encoded, as ``httpx.URL.raw_path``). ``now``
    (seconds since the epoch) and ``nonce`` (lower-case hex, at least 16 bytes)
    default to the clock and 16 fresh random bytes; tests pin them.
    """
    timestamp = int(time.time() if now is None else now)
    if timestamp < 0:
        raise AuthError("timestamp must not be negative")
    nonce = secrets.token_hex(16) if nonce is None else nonce
    if not _NONCE.fullmatch(nonce):
        raise AuthError("nonce must be 32 to 128 lower-case hex digits")
    text = canonical_request(method, path, body, timestamp, nonce, origin)
    signed = account.sign_message(encode_defunct(text=text))
    return {
        ADDRESS_HEADER: account.address,
        TIMESTAMP_HEADER: str(timestamp),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: "0x" + bytes(signed.signature).hex(),
    }


class SignedAuth(httpx.Auth):
    """Signs every request of an ``httpx.Client`` or ``httpx.AsyncClient``.

    ``httpx.Client(auth=SignedAuth(account))``. Streaming bodies are read first
    (``requires_request_body``) because the signature covers the body's digest.
    """

    requires_request_body = True

    def __init__(self, account: LocalAccount) -> None:
        self._account = account

    def __repr__(self) -> str:  # never show the account object (it holds the key)
        return f"SignedAuth({self._account.address})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        target = request.url.raw_path.decode("ascii")
        request.headers.update(
            sign_request(
                self._account,
                request.method,
                target,
                request.content,
                origin=origin_of(request.url),
            )
        )
        yield request


# -- nonces ---------------------------------------------------------------------------
@runtime_checkable
class NonceStore(Protocol):
    """Remembers which nonces each address has used while they could be replayed."""

    def remember(self, address: str, nonce: str, expires_at: float) -> bool:
        """Record ``nonce`` for ``address`` until ``expires_at`` (epoch seconds).

        Returns ``False`` if the pair is already recorded and not yet expired (a
        replay); ``True`` otherwise. Must be atomic: of two concurrent calls with the
        same pair, exactly one returns ``True``. May raise :class:`AuthError` to
        refuse (for example when full).
        """
        ...


class MemoryNonceStore:
    """A thread-safe in-process :class:`NonceStore` that forgets expired nonces.

    Expired entries are purged on every call (a heap by expiry, so each costs
    ``O(log n)`` amortized). ``max_entries`` is a hard cap for a flood of validly
    signed requests (any key can sign; authorization comes later): when it is
    reached the store refuses new requests instead of growing. One process only:
    several workers need a shared store.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, max_entries: int = 1_000_000
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._clock = clock
        self._max_entries = max_entries
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._expiry)

    def _purge(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] < now:
            expires_at, entry = heapq.heappop(heap)
            if expiry.get(entry) == expires_at:
                del expiry[entry]

    def remember(self, address: str, nonce: str, expires_at: float) -> bool:
        entry = (address, nonce)
        with self._lock:
            now = self._clock()
            self._purge(now)
            if entry in self._expiry:
                return False
            if expires_at < now:
                return True  # already outside any window: nothing to remember
            if len(self._expiry) >= self._max_entries:
                raise AuthError("too many recent requests: try again later")
            self._expiry[entry] = expires_at
            heapq.heappush(self._heap, (expires_at, entry))
            return True


# -- verifying ------------------------------------------------------------------------
def _header(headers: Mapping[str, str], name: str) -> str:
    """The one value of header ``name`` (case-insensitive); refuses missing or repeated."""
    wanted = name.lower()
    values = [v for k, v in headers.items() if k.lower() == wanted]
    if not values:
        raise AuthError(f"missing header {name}")
    if len(values) > 1:
        raise AuthError(f"header {name} appears more than once")
    return values[0].strip()


class RequestVerifier:
    """Checks the signature headers of incoming requests; returns the sender's address.

    ``max_skew_seconds`` bounds how far a request's timestamp may be from this
    clock in either direction; it also bounds how long nonces are remembered.
    ``nonces`` defaults to a :class:`MemoryNonceStore` on the same clock.
    """

    def __init__(
        self,
        max_skew_seconds: float = 60,
        nonces: NonceStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not max_skew_seconds > 0:
            raise ValueError("max_skew_seconds must be positive")
        self.max_skew_seconds = max_skew_seconds
        self.nonces: NonceStore = nonces if nonces is not None else MemoryNonceStore(clock=clock)
        self._clock = clock
        #: The origins this service answers at (``serve`` sets them once it listens);
        #: empty: the origin each request arrived at (in-process apps, tests).
        self.origins: tuple[str, ...] = ()

    def set_origins(self, *urls: str) -> None:
        """Accept signatures made for these URLs' origins only (see :func:`origin_of`)."""
        self.origins = tuple(dict.fromkeys(origin_of(u) for u in urls))

    def verify(
        self,
        method: str,
        path_and_query: str,
        body: bytes,
        headers: Mapping[str, str],
        origin: str = "",
    ) -> str:
        """The checksummed address that signed this request, or :class:`AuthError`.

        ``headers`` may be any mapping (``starlette`` and ``httpx`` headers, or a
        dict); names are matched case-insensitively. The signature must cover one of
        :attr:`origins`, or, if none are set, ``origin`` (where the request arrived).
        """
        claimed, stamp, nonce, signature = (_header(headers, name) for name in _HEADERS)
        if not _ADDRESS.fullmatch(claimed):
            raise AuthError(f"malformed {ADDRESS_HEADER}: expected 0x and 40 hex digits")
        if not _TIMESTAMP.fullmatch(stamp):
            raise AuthError(f"malformed {TIMESTAMP_HEADER}: expected whole seconds since the epoch")
        if not _NONCE.fullmatch(nonce):
            raise AuthError(f"malformed {NONCE_HEADER}: expected 32 to 128 lower-case hex digits")
        if not _SIGNATURE.fullmatch(signature):
            raise AuthError(f"malformed {SIGNATURE_HEADER}: expected 0x and 130 hex digits")

        timestamp = int(stamp)
        now = self._clock()
        skew = self.max_skew_seconds
        if timestamp < now - skew:
            raise AuthError(
                f"request expired: signed {now - timestamp:.0f} s ago, at most {skew:g} s allowed"
            )
        if timestamp > now + skew:
            raise AuthError(
                f"request from the future: timestamp {timestamp - now:.0f} s ahead of this "
                f"server's clock, at most {skew:g} s allowed"
            )

        recovered = ""
        for candidate in self.origins or (origin,):
            text = canonical_request(method, path_and_query, body, timestamp, nonce, candidate)
            try:
                recovered = str(
                    Account.recover_message(
                        encode_defunct(text=text), signature=bytes.fromhex(signature[2:])
                    )
                )
            except (ValueError, TypeError, BadSignature, ValidationError):
                recovered = ""
            if recovered.lower() == claimed.lower():
                break
        else:
            raise AuthError(
                f"signature does not match the request and {ADDRESS_HEADER} (wrong key or "
                "service, or the method, path, body, timestamp or nonce changed)"
            )

        # +1: timestamps are whole seconds; keep the nonce a little past the window.
        if not self.nonces.remember(recovered, nonce, timestamp + skew + 1):
            raise AuthError(f"replayed request: nonce already used by {recovered}")
        return recovered


# -- FastAPI --------------------------------------------------------------------------
def request_target(request: Request) -> str:
    """Path and query exactly as the client sent them (what :class:`SignedAuth` signs).

    ``request.url.path`` is percent-*decoded*, so it cannot be used: ``/a%20b`` and
    ``/a b`` must not be the same signed text. The ASGI scope's ``raw_path`` is the
    bytes of the request line (uvicorn, hypercorn and the test client provide it);
    without it the decoded path is re-encoded, which matches what httpx sends for
    paths without reserved characters. A proxy that rewrites paths breaks
    signatures, as it should.
    """
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes | bytearray):
        path = bytes(raw).decode("latin-1")
    else:
        path = quote(request.scope.get("path", "/"), safe="/!$&'()*+,;=:@~")
    query = request.scope.get("query_string", b"")
    if isinstance(query, bytes | bytearray) and query:
        path += "?" + bytes(query).decode("latin-1")
    return path


def request_origin(request: Request) -> str:
    """The origin a request arrived at, from its scheme and ``Host`` (for in-process apps)."""
    host = request.headers.get("host", "")
    try:
        return origin_of(f"{request.url.scheme}://{host}/")
    except (httpx.InvalidURL, ValueError):
        return ""


#: Where :func:`verify_scope` leaves the verified sender in the ASGI scope's state.
SENDER_STATE = "deltaml.sender"


async def verify_scope(
    verifier: RequestVerifier, scope: MutableMapping[str, object], body: bytes
) -> str:
    """Verify a request from its ASGI scope and body (on a worker thread), before any
    parsing; the sender is kept in the scope for :func:`signed_party`."""
    request = Request(dict(scope))
    sender = await run_in_threadpool(
        verifier.verify,
        request.method,
        request_target(request),
        body,
        request.headers,
        request_origin(request),
    )
    state = scope.get("state")
    if not isinstance(state, dict):
        state = scope["state"] = {}
    state[SENDER_STATE] = sender
    return sender


def signed_party(verifier: RequestVerifier) -> Callable[[Request], Awaitable[str]]:
    """A FastAPI dependency returning the verified sender's address, or HTTP 401.

    ``sender: str = Depends(signed_party(verifier))``. It reads the whole body (the
    signature covers its digest); FastAPI caches it, so the endpoint can still parse
    it. Verification runs in the thread pool because a nonce store may block (a
    database) and signature recovery is CPU work.
    """

    async def signed_sender(request: Request) -> str:
        # Already verified before the body was parsed (``guard_bodies`` with a verifier):
        # a second check would take the nonce as a replay.
        known = request.scope.get("state", {}).get(SENDER_STATE)
        if isinstance(known, str) and known:
            return known
        body = await request.body()
        try:
            return await run_in_threadpool(
                verifier.verify,
                request.method,
                request_target(request),
                body,
                request.headers,
                request_origin(request),
            )
        except AuthError as exc:
            raise HTTPException(
                status_code=401, detail=str(exc), headers={"WWW-Authenticate": SCHEME}
            ) from None

    return signed_sender
