"""Helpers for the browser tests (tests/ui)."""

from __future__ import annotations

from typing import Any


def reopen(page: Any, url: str | None = None) -> None:
    """Load ``url`` (default: the page's own) again in ``page``.

    A live page reloads itself when what it shows changes (``app.js``); a navigation the
    test starts at that moment is aborted by the browser (``net::ERR_ABORTED``), which
    is the page working, not failing. Try again then, a few times.
    """
    from playwright.sync_api import Error as PlaywrightError

    target = url or page.url
    for attempt in range(5):
        try:
            page.goto(target)
            return
        except PlaywrightError as error:
            if "ERR_ABORTED" not in str(error) or attempt == 4:
                raise
            page.wait_for_load_state()


def log_in(page: Any, url: str, password: str) -> None:
    """Log in to the node at ``url`` through its login page."""
    from playwright.sync_api import expect

    page.goto(url + "/")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("main > .flash-ok")).to_have_text("Logged in.")
