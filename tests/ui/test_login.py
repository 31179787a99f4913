"""Logging in to a node's web UI: password, session cookie, expiry, rate limit, CSRF.

These run the owner node's real app (its JSON API and the UI mounted beside it)
with FastAPI's TestClient; the node is not started, so nothing is contacted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from deltaml.services.owner import OwnerConfig, OwnerNode
from deltaml.services.owner_api import create_app
from deltaml.services.party import api_token
from deltaml.services.ui import LoginConfig
from deltaml.services.ui.sessions import (
    LoginLimiter,
    PasswordCheck,
    SessionStore,
    same_token,
)

PASSWORD = "correct horse battery staple"
BASE = "http://127.0.0.1:8701"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def write_csv(path: Path, rows: int = 30) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=rows)
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="a,b,c,y", comments="")
    return path


@pytest.fixture
def owner_node(tmp_path: Path) -> Iterator[OwnerNode]:
    node = OwnerNode(
        OwnerConfig(
            account=Account.create(),
            data=[write_csv(tmp_path / "shop.csv")],
            aggregator_url="http://127.0.0.1:9",
            database_url=f"sqlite:///{tmp_path / 'owner.sqlite'}",
            work_dir=tmp_path,
        )
    )
    yield node
    node.store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(owner_node: OwnerNode, clock: Clock) -> TestClient:
    login = LoginConfig(
        PasswordCheck.from_password(PASSWORD),
        SessionStore(idle_s=600, max_s=3600, clock=clock),
        LoginLimiter(free_attempts=3, base_delay_s=2, max_delay_s=60, clock=clock),
    )
    return TestClient(create_app(owner_node, login), base_url=BASE, follow_redirects=False)


def login_token(client: TestClient, path: str = "/ui/login") -> str:
    page = client.get(path)
    assert page.status_code == 200
    found = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def log_in(client: TestClient, password: str = PASSWORD, next_: str = "") -> object:
    token = login_token(client)
    return client.post(
        "/ui/login", data={"login_token": token, "password": password, "next": next_}
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


# -- the pieces ---------------------------------------------------------------------------
def test_password_check_keeps_a_salted_hash_only() -> None:
    check = PasswordCheck.from_password(PASSWORD)
    assert check.matches(PASSWORD)
    assert not check.matches(PASSWORD + " ")
    assert not check.matches("")
    assert not check.matches("x" * 5000)
    assert PASSWORD.encode() not in repr(vars(check)).encode()
    other = PasswordCheck.from_password(PASSWORD)
    assert vars(other)["_digest"] != vars(check)["_digest"]  # a fresh salt each start
    with pytest.raises(ValueError, match="password"):
        PasswordCheck.from_password("")


def test_sessions_expire_when_idle_and_after_their_lifetime(clock: Clock) -> None:
    store = SessionStore(idle_s=60, max_s=300, clock=clock)
    token, session = store.create()
    assert token not in repr(store._sessions)  # only a hash of the token is kept
    assert store.get(token) is session
    assert store.get(token + "x") is None and store.get(None) is None
    clock.now += 59
    assert store.get(token) is session  # used: the idle timer starts again
    clock.now += 61
    assert store.get(token) is None  # idle too long
    token, _ = store.create()
    for _ in range(6):
        clock.now += 50
        assert store.get(token) is not None
    clock.now += 1
    assert store.get(token) is None  # 301 s after the login, however busy
    assert len(store) == 0


def test_wrong_passwords_lock_a_client_out_for_longer_each_time(clock: Clock) -> None:
    limiter = LoginLimiter(free_attempts=3, base_delay_s=2, max_delay_s=10, clock=clock)
    assert [limiter.failed("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.wait_s("a") == 0
    assert limiter.failed("a") == 2
    assert limiter.wait_s("a") == 2 and limiter.wait_s("b") == 0  # per client
    clock.now += 2
    assert limiter.wait_s("a") == 0
    assert [limiter.failed("a") for _ in range(4)] == [4, 8, 10, 10]  # doubling, capped
    limiter.succeeded("a")
    assert limiter.wait_s("a") == 0 and limiter.failed("a") == 0


def test_same_token_refuses_empty_and_different_tokens() -> None:
    assert same_token("abc", "abc")
    assert not same_token("", "") and not same_token(None, "abc") and not same_token("abd", "abc")


# -- through the app ------------------------------------------------------------------------
def test_pages_need_a_login_and_the_api_keeps_its_token(
    client: TestClient, owner_node: OwnerNode
) -> None:
    home = client.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/ui/"
    page = client.get("/ui/datasets", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].endswith("/ui/login?next=%2Fui%2Fdatasets")
    api = client.get("/ui/api/offers")
    assert api.status_code == 401 and api.json() == {"detail": "log in first"}
    # The node's JSON API (the CLI's and the demo's) still wants its bearer token.
    assert client.get("/status").status_code == 401
    token = api_token(owner_node.config.work_dir)
    status = client.get("/status", headers={"Authorization": f"Bearer {token}"})
    assert status.status_code == 200 and status.json()["address"] == owner_node.address
    # ... and the token is no key to the pages.
    page = client.get(
        "/ui/datasets", headers={"Authorization": f"Bearer {token}"}, follow_redirects=False
    )
    assert page.status_code == 303


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_the_session(
    client: TestClient, owner_node: OwnerNode
) -> None:
    response = log_in(client, next_="/ui/datasets")
    assert response.status_code == 303 and response.headers["location"] == "/ui/datasets"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("deltaml_session_")
    )
    name = cookie.split("=", 1)[0]
    assert name == f"deltaml_session_{owner_node.address[2:10].lower()}"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    page = client.get("/ui/datasets")
    assert page.status_code == 200 and "shop" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert PASSWORD not in page.text
    stolen = client.cookies.get(name)
    out = client.post("/ui/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"].endswith("/ui/login?bye=1")
    assert "You have logged out." in client.get(out.headers["location"]).text
    client.cookies.set(name, stolen, path="/ui")  # the old cookie is worth nothing now
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_a_wrong_password_says_so_and_the_login_only_goes_to_this_ui(
    client: TestClient,
) -> None:
    wrong = log_in(client, "guess")
    assert wrong.status_code == 401 and "Wrong password." in wrong.text
    assert "deltaml_session" not in wrong.headers.get("set-cookie", "")
    for target in ("https://evil.example/", "//evil.example/ui/", "/docs", "/ui\\..\\x"):
        client.cookies.clear()
        response = log_in(client, next_=target)
        assert response.headers["location"] == "/ui/", target
    assert client.get("/ui/login", follow_redirects=False).status_code == 303  # logged in


def test_the_login_form_needs_its_own_token(client: TestClient) -> None:
    login_token(client)
    response = client.post("/ui/login", data={"login_token": "forged", "password": PASSWORD})
    assert response.status_code == 400 and "expired" in response.text
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_wrong_passwords_are_rate_limited_even_the_right_one_while_locked(
    client: TestClient, clock: Clock
) -> None:
    for _ in range(3):
        assert log_in(client, "guess").status_code == 401
    fourth = log_in(client, "guess")
    assert fourth.status_code == 401 and "wait 2 seconds" in fourth.text
    locked = log_in(client)  # the right password, but too soon
    assert locked.status_code == 429 and "Too many wrong passwords" in locked.text
    assert client.get("/ui/", follow_redirects=False).status_code == 303
    clock.now += 2
    assert log_in(client, "guess").status_code == 401  # locked again, for 4 s
    clock.now += 3
    assert log_in(client).status_code == 429
    clock.now += 1
    assert log_in(client).status_code == 303
    assert client.get("/ui/").status_code == 200


def test_forms_without_the_sessions_csrf_token_are_refused(
    client: TestClient, owner_node: OwnerNode
) -> None:
    log_in(client)
    page = client.get("/ui/")
    for data in ({}, {"csrf_token": "forged"}):
        response = client.post("/ui/offers/1/accept", data=data)
        assert response.status_code == 403 and "did not come from this page" in response.text
        upload = client.post(
            "/ui/datasets", data=data, files={"file": ("x.csv", b"a,y\n1,2\n2,3\n3,5\n")}
        )
        assert upload.status_code == 403
    assert set(owner_node.datasets) == {"shop"}
    # With the token, the same form is taken (here: no such offer).
    response = client.post("/ui/offers/1/accept", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 404 and "was not offered" in response.text


def test_two_nodes_on_one_host_keep_separate_logins(tmp_path: Path) -> None:
    apps = []
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        node = OwnerNode(
            OwnerConfig(
                account=Account.create(),
                data=[write_csv(folder / "d.csv")],
                aggregator_url="http://127.0.0.1:9",
                database_url=f"sqlite:///{folder / 'o.sqlite'}",
                work_dir=folder,
            )
        )
        apps.append(create_app(node, LoginConfig.from_password(name)))
    # One browser holds the cookies of both (cookies do not tell ports apart): each
    # node's cookie has its own name, so neither login replaces the other.
    first, second = (TestClient(app, base_url=BASE, follow_redirects=False) for app in apps)
    assert log_in(first, "one").status_code == 303
    assert log_in(second, "two").status_code == 303
    jar = {
        c.name: c.value
        for c in [*first.cookies.jar, *second.cookies.jar]
        if c.name.startswith("deltaml_session_")
    }
    assert len(jar) == 2
    for client in (first, second):
        client.cookies.clear()
        for name, value in jar.items():
            client.cookies.set(name, value, path="/ui")
        assert client.get("/ui/", follow_redirects=False).status_code == 200
