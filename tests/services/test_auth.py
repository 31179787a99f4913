"""Signed requests: accepted from the signer, refused with a clear reason otherwise.

Unit tests cover every rejection of :class:`RequestVerifier`; the FastAPI tests
go through the dependency, and one server is real (uvicorn on a socket) so that
what httpx signs is checked against what a real server sees, percent-encoding
included.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.datastructures import Headers

from deltaml.errors import DeltaMLError
from deltaml.services.auth import (
    ADDRESS_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AuthError,
    MemoryNonceStore,
    NonceStore,
    RequestVerifier,
    SignedAuth,
    canonical_request,
    origin_of,
    request_target,
    sign_request,
    signed_party,
)

ALICE = Account.from_key("0x" + "11" * 32)
BOB = Account.from_key("0x" + "22" * 32)
T0 = 1_700_000_000.0
NONCE = "ab" * 16
HEADERS = (ADDRESS_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)


def _run_async(coro: Any) -> Any:
    """``asyncio.run`` on a thread of its own: it works even if this thread has a loop
    running (Playwright's sync API, used by other tests in the session, leaves one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier_at(now: float = T0, skew: float = 60) -> tuple[RequestVerifier, FakeClock]:
    clock = FakeClock(now)
    return RequestVerifier(max_skew_seconds=skew, clock=clock), clock


def signed(
    method: str = "POST",
    path: str = "/jobs/7?x=1",
    body: bytes = b'{"a":1}',
    *,
    account: Any = ALICE,
    now: float = T0,
    nonce: str = NONCE,
) -> dict[str, str]:
    return sign_request(account, method, path, body, now=now, nonce=nonce)


def refused(
    verifier: RequestVerifier,
    headers: dict[str, str],
    match: str,
    *,
    method: str = "POST",
    path: str = "/jobs/7?x=1",
    body: bytes = b'{"a":1}',
) -> AuthError:
    with pytest.raises(AuthError, match=match) as info:
        verifier.verify(method, path, body, headers)
    message = str(info.value)
    assert "\n" not in message
    assert ALICE.key.hex().removeprefix("0x") not in message  # no key material, ever
    return info.value


# -- signing --------------------------------------------------------------------------
def test_canonical_text_and_signature_are_plain_eip191() -> None:
    headers = signed()
    assert set(headers) == set(HEADERS)
    assert headers[ADDRESS_HEADER] == ALICE.address
    assert headers[TIMESTAMP_HEADER] == str(int(T0))
    assert headers[NONCE_HEADER] == NONCE
    assert headers[SIGNATURE_HEADER].startswith("0x") and len(headers[SIGNATURE_HEADER]) == 132
    text = canonical_request("post", "/jobs/7?x=1", b'{"a":1}', int(T0), NONCE)
    assert text == (
        "deltaml-http/2\n\nPOST\n/jobs/7?x=1\n"
        "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862\n"
        f"{int(T0)}\n{NONCE}"
    )
    # Any Ethereum tool can check it: it is personal_sign over that text.
    recovered = Account.recover_message(
        encode_defunct(text=text), signature=headers[SIGNATURE_HEADER]
    )
    assert recovered == ALICE.address


def test_defaults_are_the_clock_and_a_fresh_nonce() -> None:
    first, second = (sign_request(ALICE, "GET", "/", b"") for _ in range(2))
    assert abs(int(first[TIMESTAMP_HEADER]) - time.time()) <= 2
    assert len(first[NONCE_HEADER]) == 32 and first[NONCE_HEADER] != second[NONCE_HEADER]
    assert RequestVerifier().verify("GET", "/", b"", first) == ALICE.address


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nonce": "short"}, "nonce must be"),
        ({"nonce": "AB" * 16}, "nonce must be"),
        ({"now": -5}, "must not be negative"),
        ({"method": "GE T"}, "malformed method"),
        ({"path": "jobs"}, "malformed path"),
        ({"path": "/a b"}, "malformed path"),
        ({"path": "/a\nGET"}, "malformed path"),
    ],
)
def test_sign_request_refuses_what_cannot_be_signed_unambiguously(
    kwargs: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {"method": "GET", "path": "/", "now": T0, "nonce": NONCE}
    args.update(kwargs)
    with pytest.raises(AuthError, match=match):
        sign_request(ALICE, args["method"], args["path"], b"", now=args["now"], nonce=args["nonce"])


def test_an_empty_query_is_the_same_target() -> None:
    verifier, _ = verifier_at()
    headers = signed("GET", "/a?", b"")
    assert verifier.verify("GET", "/a", b"", headers) == ALICE.address


# -- verifying: acceptance ------------------------------------------------------------
def test_a_signed_request_yields_the_checksummed_address() -> None:
    verifier, _ = verifier_at()
    assert verifier.verify("POST", "/jobs/7?x=1", b'{"a":1}', signed()) == ALICE.address
    # Header names are case-insensitive, and the method's case does not matter.
    lower = {k.lower(): v for k, v in signed(nonce="cd" * 16).items()}
    assert verifier.verify("post", "/jobs/7?x=1", b'{"a":1}', lower) == ALICE.address
    # A lower-case claimed address is the same address.
    headers = signed(nonce="ef" * 16)
    headers[ADDRESS_HEADER] = headers[ADDRESS_HEADER].lower()
    assert verifier.verify("POST", "/jobs/7?x=1", b'{"a":1}', headers) == ALICE.address


def test_timestamps_at_the_edge_of_the_window_are_accepted() -> None:
    for now in (T0 - 60, T0 + 60):
        verifier, _ = verifier_at(now)
        assert verifier.verify("POST", "/jobs/7?x=1", b'{"a":1}', signed()) == ALICE.address
    verifier, _ = verifier_at(T0 + 60.5)
    refused(verifier, signed(), "^request expired")


# -- verifying: rejections ------------------------------------------------------------
@pytest.mark.parametrize("missing", HEADERS)
def test_missing_headers_are_named(missing: str) -> None:
    verifier, _ = verifier_at()
    headers = signed()
    del headers[missing]
    refused(verifier, headers, f"^missing header {missing}$")


def test_repeated_headers_are_refused() -> None:
    verifier, _ = verifier_at()
    headers = signed()
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((NONCE_HEADER.lower().encode(), ("cd" * 16).encode()))
    refused(verifier, Headers(raw=raw), f"header {NONCE_HEADER} appears more than once")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (ADDRESS_HEADER, "alice"),
        (ADDRESS_HEADER, "0x" + "1" * 39),
        (ADDRESS_HEADER, "0x" + "g" * 40),
        (ADDRESS_HEADER, ""),
        (TIMESTAMP_HEADER, "soon"),
        (TIMESTAMP_HEADER, "-1700000000"),
        (TIMESTAMP_HEADER, "1700000000.5"),
        (TIMESTAMP_HEADER, "1" * 13),
        (TIMESTAMP_HEADER, "١٧٠٠٠٠٠٠٠٠"),  # Arabic-Indic digits: int() would accept them
        (NONCE_HEADER, "ab" * 15),
        (NONCE_HEADER, "AB" * 16),
        (NONCE_HEADER, "zz" * 16),
        (NONCE_HEADER, "ab" * 65),
        (SIGNATURE_HEADER, "0x1234"),
        (SIGNATURE_HEADER, "ab" * 65),
        (SIGNATURE_HEADER, "0x" + "zz" * 65),
    ],
)
def test_malformed_headers_are_named(header: str, value: str) -> None:
    verifier, _ = verifier_at()
    headers = signed()
    headers[header] = value
    refused(verifier, headers, f"^malformed {header}: expected ")


def test_old_and_future_timestamps_are_refused() -> None:
    verifier, clock = verifier_at(T0 + 61)
    refused(verifier, signed(), r"^request expired: signed 61 s ago, at most 60 s allowed$")
    clock.now = T0 - 3600
    refused(verifier, signed(), r"^request from the future: timestamp 3600 s ahead")
    # Refused requests leave no nonce behind.
    clock.now = T0
    assert verifier.verify("POST", "/jobs/7?x=1", b'{"a":1}', signed()) == ALICE.address


def test_the_skew_is_configurable() -> None:
    verifier, _ = verifier_at(T0 + 11, skew=10)
    refused(verifier, signed(), "at most 10 s allowed")
    with pytest.raises(ValueError):
        RequestVerifier(max_skew_seconds=0)


def test_a_signature_by_another_key_does_not_match() -> None:
    verifier, _ = verifier_at()
    headers = signed(account=BOB)
    headers[ADDRESS_HEADER] = ALICE.address
    refused(verifier, headers, "^signature does not match the request and X-DeltaML-Address")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "PUT"),
        ("path", "/jobs/8?x=1"),
        ("path", "/jobs/7?x=2"),
        ("path", "/jobs/7"),
        ("path", "/jobs/7?x=1&y=2"),
        ("path", "/jobs%2F7?x=1"),
        ("body", b'{"a":2}'),
        ("body", b""),
        ("body", b'{"a":1} '),
    ],
)
def test_tampered_requests_do_not_match(field: str, value: Any) -> None:
    verifier, _ = verifier_at()
    request: dict[str, Any] = {"method": "POST", "path": "/jobs/7?x=1", "body": b'{"a":1}'}
    request[field] = value
    refused(verifier, signed(), "^signature does not match", **request)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (TIMESTAMP_HEADER, str(int(T0) + 1)),
        (NONCE_HEADER, "cd" * 16),
        # Flip one bit of s, and a v that recovers nothing.
        (SIGNATURE_HEADER, None),
        (SIGNATURE_HEADER, "0x" + "00" * 65),
    ],
)
def test_tampered_headers_do_not_match(header: str, value: str | None) -> None:
    verifier, _ = verifier_at()
    headers = signed()
    if value is None:
        sig = bytearray(bytes.fromhex(headers[SIGNATURE_HEADER][2:]))
        sig[40] ^= 1
        value = "0x" + sig.hex()
    headers[header] = value
    refused(verifier, headers, "^signature does not match")


def test_replays_are_refused_per_address() -> None:
    verifier, clock = verifier_at()
    headers = signed()
    assert verifier.verify("POST", "/jobs/7?x=1", b'{"a":1}', headers) == ALICE.address
    clock.now += 30
    refused(verifier, headers, f"^replayed request: nonce already used by {ALICE.address}$")
    # The same nonce from another address is that address's own business.
    assert verifier.verify("POST", "/jobs/7?x=1", b'{"a":1}', signed(account=BOB)) == BOB.address
    # Once outside the window the timestamp alone refuses the replay.
    clock.now = T0 + 120
    refused(verifier, headers, "^request expired")


def test_nonces_are_forgotten_after_the_window() -> None:
    clock = FakeClock()
    store = MemoryNonceStore(clock=clock)
    verifier = RequestVerifier(max_skew_seconds=60, nonces=store, clock=clock)
    for i in range(50):
        clock.now = T0 + i
        headers = signed(now=clock.now, nonce=f"{i:032x}")
        verifier.verify("POST", "/jobs/7?x=1", b'{"a":1}', headers)
    assert len(store) == 50  # all within the window of the newest
    clock.now = T0 + 49 + 62
    assert len(store) == 0  # bounded: nothing outlives its window


def test_memory_nonce_store_contract() -> None:
    clock = FakeClock()
    store = MemoryNonceStore(clock=clock, max_entries=3)
    assert isinstance(store, NonceStore)
    assert store.remember("a", "n1", T0 + 10) is True
    assert store.remember("a", "n1", T0 + 10) is False
    assert store.remember("b", "n1", T0 + 10) is True
    assert store.remember("a", "old", T0 - 1) is True  # already expired: not kept
    assert len(store) == 2
    store.remember("a", "n2", T0 + 20)
    with pytest.raises(AuthError, match="too many recent requests"):
        store.remember("a", "n3", T0 + 20)
    clock.now = T0 + 11
    assert store.remember("a", "n1", T0 + 30) is True  # expired, so free again
    with pytest.raises(ValueError):
        MemoryNonceStore(max_entries=0)


def test_memory_nonce_store_is_atomic_under_threads() -> None:
    store = MemoryNonceStore()
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def claim() -> None:
        barrier.wait()
        results.append(store.remember("a", "same", time.time() + 60))

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 15 + [True]


def test_a_custom_store_is_used_and_may_refuse() -> None:
    class Refusing:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str, float]] = []

        def remember(self, address: str, nonce: str, expires_at: float) -> bool:
            self.calls.append((address, nonce, expires_at))
            return False

    store = Refusing()
    verifier = RequestVerifier(nonces=store, clock=FakeClock())
    refused(verifier, signed(), "^replayed request")
    assert store.calls == [(ALICE.address, NONCE, int(T0) + 61)]


def test_auth_error_is_a_deltaml_error() -> None:
    assert issubclass(AuthError, DeltaMLError)


# -- httpx ----------------------------------------------------------------------------
def echo_transport(verifier: RequestVerifier) -> httpx.MockTransport:
    """A transport that verifies like a server would: raw path, raw body."""

    def handle(request: httpx.Request) -> httpx.Response:
        try:
            address = verifier.verify(
                request.method,
                request.url.raw_path.decode(),
                request.read(),
                request.headers,
                origin_of(request.url),
            )
        except AuthError as exc:
            return httpx.Response(401, json={"detail": str(exc)})
        return httpx.Response(200, json={"address": address})

    return httpx.MockTransport(handle)


def test_signed_auth_signs_sync_requests() -> None:
    verifier = RequestVerifier()
    auth = SignedAuth(ALICE)
    assert ALICE.key.hex() not in repr(auth)
    with httpx.Client(transport=echo_transport(verifier), auth=auth) as client:
        for response in (
            client.get("http://x/a%20b/%C3%BC?q=x%20y&z=%2F"),
            client.post("http://x/jobs", json={"a": [1, 2]}),
            client.put("http://x/jobs/1", content=iter([b"chunk", b"ed"])),  # a stream
            client.post("http://x/upload", files={"f": ("f.bin", b"\x00\x01")}),
        ):
            assert response.status_code == 200, response.text
            assert response.json() == {"address": ALICE.address}
    with httpx.Client(transport=echo_transport(verifier)) as client:
        response = client.get("http://x/a")
        assert response.status_code == 401
        assert response.json() == {"detail": f"missing header {ADDRESS_HEADER}"}


def test_signed_auth_signs_async_requests() -> None:
    verifier = RequestVerifier()

    async def run() -> list[httpx.Response]:
        async def stream() -> Any:
            yield b"async "
            yield b"body"

        async with httpx.AsyncClient(
            transport=echo_transport(verifier), auth=SignedAuth(ALICE)
        ) as client:
            return [
                await client.get("http://x/a?b=c"),
                await client.post("http://x/a", content=b"payload"),
                await client.post("http://x/a", content=stream()),
            ]

    for response in _run_async(run()):
        assert response.status_code == 200, response.text
        assert response.json() == {"address": ALICE.address}


# -- FastAPI --------------------------------------------------------------------------
class Payload(BaseModel):
    value: int


def make_app(verifier: RequestVerifier) -> FastAPI:
    app = FastAPI()
    party = signed_party(verifier)

    @app.get("/whoami")
    async def whoami(sender: str = Depends(party)) -> dict[str, str]:
        return {"address": sender}

    @app.get("/items/{name:path}")
    async def item(name: str, request: Request, sender: str = Depends(party)) -> dict[str, str]:
        return {"address": sender, "name": name, "target": request_target(request)}

    @app.post("/echo")
    async def echo(payload: Payload, sender: str = Depends(party)) -> dict[str, Any]:
        # The dependency read the body; FastAPI still parses it for the endpoint.
        return {"address": sender, "value": payload.value}

    return app


PERCENT_PATH = "/items/a%20b%2Fc%3F%C3%BC?q=x%20y&z=%2F&empty="


def test_fastapi_dependency_with_the_test_client() -> None:
    app = make_app(RequestVerifier())
    client = TestClient(app, base_url="http://testserver")
    signed_client = TestClient(app, base_url="http://testserver")
    signed_client.auth = SignedAuth(BOB)

    response = signed_client.get("/whoami")
    assert response.status_code == 200 and response.json() == {"address": BOB.address}
    response = signed_client.post("/echo", json={"value": 41})
    assert response.json() == {"address": BOB.address, "value": 41}
    response = signed_client.get(PERCENT_PATH)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "a b/c?ü"  # decoded for the endpoint...
    assert response.json()["target"] == PERCENT_PATH  # ...raw for the signature

    response = client.get("/whoami")
    assert response.status_code == 401
    assert response.json() == {"detail": f"missing header {ADDRESS_HEADER}"}
    assert response.headers["www-authenticate"] == "deltaml-http/2"


def test_request_target_falls_back_to_reencoding_the_path() -> None:
    scope = {"type": "http", "path": "/a b/ü", "query_string": b"x=1", "headers": []}
    assert request_target(Request(scope)) == "/a%20b/%C3%BC?x=1"
    scope = {"type": "http", "path": "/a", "raw_path": b"/a", "query_string": b"", "headers": []}
    assert request_target(Request(scope)) == "/a"


# -- a real server --------------------------------------------------------------------
@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1, on a free port, for this module."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        make_app(RequestVerifier(max_skew_seconds=60)), log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def test_real_server_accepts_signed_requests(server_url: str) -> None:
    with httpx.Client(base_url=server_url, auth=SignedAuth(ALICE), timeout=10) as client:
        response = client.get("/whoami")
        assert response.status_code == 200 and response.json() == {"address": ALICE.address}
        response = client.post("/echo", json={"value": 7})
        assert response.status_code == 200
        assert response.json() == {"address": ALICE.address, "value": 7}
        response = client.get(PERCENT_PATH)
        assert response.status_code == 200, response.text
        assert response.json()["target"] == PERCENT_PATH
        response = client.get("/items/plain", params={"q": "x y/ü", "n": 3})
        assert response.status_code == 200, response.text


def test_real_server_accepts_async_clients(server_url: str) -> None:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=server_url, auth=SignedAuth(BOB), timeout=10
        ) as client:
            return list(
                await asyncio.gather(*(client.post("/echo", json={"value": i}) for i in range(5)))
            )

    responses = _run_async(run())
    assert [r.json() for r in responses] == [{"address": BOB.address, "value": i} for i in range(5)]


def test_real_server_refuses_unsigned_tampered_expired_and_replayed(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=10) as client:
        response = client.get("/whoami")
        assert response.status_code == 401
        assert response.json() == {"detail": f"missing header {ADDRESS_HEADER}"}

        headers = sign_request(ALICE, "POST", "/echo", b'{"value": 1}')
        response = client.post("/echo", content=b'{"value": 2}', headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"].startswith("signature does not match")

        headers = sign_request(ALICE, "GET", "/whoami", b"", now=time.time() - 3600)
        response = client.get("/whoami", headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"].startswith("request expired")

        headers = sign_request(ALICE, "GET", "/whoami", b"", now=time.time() + 3600)
        response = client.get("/whoami", headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"].startswith("request from the future")

    with httpx.Client(base_url=server_url, auth=SignedAuth(ALICE), timeout=10) as signed_client:
        first = signed_client.post("/echo", json={"value": 3})
        assert first.status_code == 200
        sent = first.request
    with httpx.Client(base_url=server_url, timeout=10) as client:
        replay = client.post(
            "/echo", content=sent.content, headers={h: sent.headers[h] for h in HEADERS}
        )
        assert replay.status_code == 401
        assert replay.json() == {
            "detail": f"replayed request: nonce already used by {ALICE.address}"
        }


def test_the_database_nonce_store_takes_a_nonce_sent_at_once_exactly_once(db_url: str) -> None:
    """Concurrent requests with one nonce: one passes, the others are replays, never a crash."""
    import secrets

    from deltaml.services.store import Store

    store = Store(db_url)
    try:
        for _ in range(3):
            nonce = secrets.token_hex(16)
            barrier = threading.Barrier(8)

            def remember(_i: int, nonce: str = nonce, barrier: threading.Barrier = barrier) -> bool:
                barrier.wait()
                return store.remember("0xabc", nonce, time.time() + 60)

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                outcomes = list(pool.map(remember, range(8)))
            assert outcomes.count(True) == 1, outcomes
    finally:
        store.close()


def test_the_signature_covers_the_target_service() -> None:
    """A call signed for one service cannot be replayed to another (issue 12)."""
    headers = sign_request(ALICE, "GET", "/offers", b"", origin="http://127.0.0.1:8700")
    here, there = RequestVerifier(), RequestVerifier()
    here.set_origins("http://127.0.0.1:8700/")
    there.set_origins("http://127.0.0.1:9700")
    assert here.verify("GET", "/offers", b"", headers, "http://evil:1") == ALICE.address
    with pytest.raises(AuthError, match="wrong key or service"):
        there.verify("GET", "/offers", b"", headers, "http://127.0.0.1:8700")
    # Without configured origins, where the request arrived decides.
    with pytest.raises(AuthError, match="wrong key or service"):
        RequestVerifier().verify("GET", "/offers", b"", headers, "https://127.0.0.1:8700")
    assert origin_of("HTTPS://Example.ORG/x?y") == "https://example.org:443"
    assert origin_of("http://[::1]:8/") == "http://[::1]:8"
