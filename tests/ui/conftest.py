"""Fixtures of the web UI tests: Debian's Chromium driven by Playwright, and a marketplace
of real node processes on 127.0.0.1 for it to look at."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def _browser_or_explain() -> tuple[Any, str]:
    """Playwright's sync API, or None and why not (skip; a failure in CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None, "the playwright package is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return None, f"{CHROMIUM} is missing (apt-get install chromium)"
    return sync_playwright, ""


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Headless Chromium (Debian's, never a downloaded build)."""
    sync_playwright, reason = _browser_or_explain()
    if sync_playwright is None:
        if os.environ.get("DELTAML_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Guard:
    """Every request the pages make: anything not to a local address fails the test."""

    seen: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def route(self, route: Any) -> None:
        url = route.request.url
        self.seen.append(url)
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            route.continue_()
            return
        if parts.scheme not in ("http", "https") or parts.hostname not in LOCAL_HOSTS:
            self.outside.append(url)
            route.abort()
            return
        route.continue_()

    def console(self, message: Any) -> None:
        # A page of a 4xx status logs "Failed to load resource": expected (wrong password).
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.page_errors.append(message.text)

    def check(self) -> None:
        assert not self.outside, f"requests to non-local addresses: {self.outside}"
        assert not self.page_errors, f"script or policy errors in the pages: {self.page_errors}"


@pytest.fixture
def guarded(chromium: Any) -> Iterator[Any]:
    """``new_page()``: a page in its own browser context (its own cookies), guarded."""
    guard = Guard()
    contexts: list[Any] = []

    def new_page(width: int = 1280, height: int = 720) -> Any:
        context = chromium.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True
        )
        context.route("**/*", guard.route)
        contexts.append(context)
        page = context.new_page()
        page.on("console", guard.console)
        page.on("pageerror", lambda exc: guard.page_errors.append(str(exc)))
        page.set_default_timeout(30_000)
        return page

    new_page.guard = guard  # type: ignore[attr-defined]
    try:
        yield new_page
    finally:
        for context in contexts:
            context.close()
    guard.check()


@dataclass
class Market:
    password: str
    aggregator: str
    buyer: str
    owners: list[str]
    work_dir: Path
    rounds: int
    features: list[str]
    target: str
    processes: list[Any]


def _write_shares(work_dir: Path, owners: int) -> tuple[list[Path], list[str], str]:
    from deltaml.learning.data import load_dataset, save_csv, split_owners

    data = load_dataset("diabetes")
    paths = [
        save_csv(share, work_dir / f"owner-{i + 1}" / "data" / "diabetes.csv")
        for i, share in enumerate(split_owners(data, owners, seed=0))
    ]
    return paths, list(data.feature_names), data.target_name


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    """A chain, an aggregator, a buyer (manual approval) and 3 owners (manual accept and
    withdrawal), each its own process on 127.0.0.1 — as ``deltaml demo`` starts them."""
    from deltaml.ledger import connect, fund_from_dev_account
    from deltaml.ledger.accounts import generate_account, save_keystore
    from deltaml.ledger.node_process import EmbeddedNodeProcess
    from deltaml.marketplace import DEMO_FUNDING_WEI
    from deltaml.services.serve import PASSWORD_ENV, ServiceProcess

    work_dir = tmp_path_factory.mktemp("ui-market")
    password = "ui-" + secrets.token_hex(8)
    n_owners = 3
    names = ["aggregator", "buyer", *(f"owner-{i + 1}" for i in range(n_owners))]
    accounts = {name: generate_account() for name in names}
    for name, account in accounts.items():
        save_keystore(account, work_dir / name / "account.json", password, iterations=2**14)
    paths, features, target = _write_shares(work_dir, n_owners)
    processes: list[Any] = []
    chain = EmbeddedNodeProcess()
    try:
        fund_from_dev_account(
            connect(chain.url),
            [str(a.address) for a in accounts.values()],
            DEMO_FUNDING_WEI,
            demo=True,
        )

        def start(name: str, args: list[str]) -> Any:
            folder = work_dir / name
            proc = ServiceProcess(
                name,
                [*args, "--port", "0", "--dir", str(folder), "--demo-keys"],
                env={PASSWORD_ENV: password},
                log_path=folder / "service.log",
                wait=False,
            )
            processes.append(proc)
            return proc

        aggregator = start("aggregator", ["aggregator", "serve", "--chain-url", chain.url])
        aggregator.wait_ready()
        buyer = start(
            "buyer",
            [
                "buyer",
                "serve",
                "--aggregator",
                aggregator.url,
                "--allow-test-keys",
                "--approve",
                "manual",
                "--arbiter",
                "0x000000000000000000000000000000000000dEaD",  # resolves disputes; none here
            ],
        )
        owners = [
            start(
                f"owner-{i + 1}",
                [
                    "owner",
                    "serve",
                    "--data",
                    str(path),
                    "--aggregator",
                    aggregator.url,
                    "--name",
                    f"owner {i + 1}",
                    "--accept",
                    "manual",
                    "--withdraw",
                    "manual",
                ],
            )
            for i, path in enumerate(paths)
        ]
        for proc in [buyer, *owners]:
            proc.wait_ready()
        yield Market(
            password=password,
            aggregator=aggregator.url,
            buyer=buyer.url,
            owners=[o.url for o in owners],
            work_dir=work_dir,
            rounds=12,
            features=features,
            target=target,
            processes=processes,
        )
    finally:
        for proc in reversed(processes):
            proc.stop()
        chain.stop()


@pytest.fixture
def screenshot() -> Any:
    """``screenshot(page, name)``: the whole page as ``test-artifacts/ui/<name>.png``."""

    def take(page: Any, name: str, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take
