"""Races: a nonce sent twice at once, and many wrong passwords at once (issue 12)."""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_account import Account

from deltaml.services.auth import AuthError, RequestVerifier, sign_request
from deltaml.services.store import Store
from deltaml.services.ui.sessions import LoginLimiter

PARALLEL = 12


@pytest.fixture
def store(postgres_url: str):
    """PostgreSQL, where the race was seen (SQLite serializes these writers; the
    services tests check both: tests/services/test_auth.py)."""
    s = Store(postgres_url)
    yield s
    s.close()


def test_one_nonce_sent_many_times_at_once_is_one_request_and_replays(store: Store) -> None:
    """Two requests with the same nonce at once used to be an IntegrityError (a 500)."""
    verifier = RequestVerifier(nonces=store)
    account = Account.create()
    for _ in range(4):
        headers = sign_request(account, "GET", "/offers", b"", nonce=secrets.token_hex(16))
        barrier = threading.Barrier(PARALLEL)

        def verify(headers: dict[str, str] = headers, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            try:
                verifier.verify("GET", "/offers", b"", headers)
                return "ok"
            except AuthError as exc:
                return "replay" if "replayed" in str(exc) else f"auth: {exc}"
            except Exception as exc:  # what the service would turn into a 500
                return f"crash: {type(exc).__name__}"

        with ThreadPoolExecutor(PARALLEL) as pool:
            outcomes = list(pool.map(lambda _i: verify(), range(PARALLEL)))
        assert outcomes.count("ok") == 1, outcomes
        assert outcomes.count("replay") == PARALLEL - 1, outcomes


def test_thirty_parallel_wrong_passwords_are_not_all_checked() -> None:
    """The web login's protocol (web.py): reserve, check the password, report the outcome."""
    limiter = LoginLimiter()
    barrier = threading.Barrier(30)

    def attempt(_i: int) -> int:
        barrier.wait()
        if limiter.wait_s("203.0.113.9") > 0:
            return 429
        time.sleep(0.05)  # the password check (scrypt) takes a while
        limiter.failed("203.0.113.9")
        return 401

    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(attempt, range(30)))
    assert statuses.count(429) > 0
    assert statuses.count(401) <= limiter.free_attempts


def test_one_new_owner_registering_many_times_at_once_is_never_a_500(
    postgres_url: str, tmp_path
) -> None:
    """Two registrations of the same new owner at once both inserted its row: the
    second failed with an IntegrityError (a 500). Now one inserts, the others update."""
    from deltaml.services.aggregator import (
        AggregatorConfig,
        AggregatorService,
        OwnerRegistration,
    )

    service = AggregatorService(
        AggregatorConfig(account=Account.create(), database_url=postgres_url, work_dir=tmp_path)
    )
    try:
        body = OwnerRegistration(name="o", datasets=[])
        for _ in range(4):
            address = Account.create().address
            barrier = threading.Barrier(PARALLEL)

            def register(_i: int, address: str = address, barrier=barrier) -> str:
                barrier.wait()
                try:
                    service.register_owner(address, body)
                    return "ok"
                except Exception as exc:  # what the service would turn into a 500
                    return f"crash: {type(exc).__name__}"

            with ThreadPoolExecutor(PARALLEL) as pool:
                outcomes = list(pool.map(register, range(PARALLEL)))
            assert outcomes == ["ok"] * PARALLEL, outcomes
        assert service.registered == 4
    finally:
        service.close()
