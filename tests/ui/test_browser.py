"""The web UIs in a real browser, against a real marketplace of node processes.

A buyer and three data owners do everything through their pages: log in (after a
wrong password), add a dataset (after a broken one), create a request (after a
form with mistakes), accept it, watch the MSE chart grow round by round without
a reload, see contributions, payments and the verified evidence, approve the
settlement, withdraw, and download the model. Every request the pages make is
checked to go to 127.0.0.1 only; every page is saved as a screenshot under
``test-artifacts/ui/``.
"""

from __future__ import annotations

import calendar
import contextlib
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from browser_testkit import reopen
from deltaml.estimator import TrainedModel
from deltaml.learning.data import load_dataset

pytestmark = pytest.mark.slow

expect: Any = None


@pytest.fixture(autouse=True)
def _expect(chromium: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=30_000)
    expect = playwright_expect


def log_in(page: Any, url: str, password: str) -> None:
    page.goto(url + "/")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("main > .flash-ok")).to_have_text("Logged in.")


def live_state(page: Any) -> dict[str, Any] | None:
    """What the buyer's page shows now (None while it reloads)."""
    try:
        state: dict[str, Any] = page.evaluate(
            """() => ({
                mark: window.__noReload === true,
                points: document.querySelectorAll('[data-chart] circle.point').length,
                status: (document.querySelector('.stats [data-field=status]') || {}).textContent,
            })"""
        )
    except Exception:  # the execution context goes away during a reload
        return None
    return state


#: The pages each serves about request 1 (HTML, and the JSON its scripts read).
BUYER_PAGES = [
    "/ui/",
    "/ui/requests/1",
    "/ui/api/requests/1",
    "/ui/api/requests",
    "/ui/requests/new",
]
AGGREGATOR_PAGES = ["/ui/", "/ui/requests/1", "/ui/api/requests/1", "/ui/api/requests"]


def served(page: Any, base: str, paths: list[str]) -> dict[str, str]:
    """Each page's text as the browser gets it (with ``page``'s login)."""
    texts = {}
    for path in paths:
        response = page.request.get(base + path)
        assert response.ok and "/ui/login" not in response.url, (path, response.url)
        texts[base + path] = response.text()
    return texts


def decimals(values: np.ndarray) -> np.ndarray:
    """How many decimals each value has as written (up to 6)."""
    return np.array([len(f"{v:.6f}".rstrip("0").split(".")[1]) for v in values])


def leaked(text: str, values: np.ndarray) -> list[str]:
    """The numbers in ``text`` that are one of ``values`` as written or rounded.

    A number of at least 4 significant digits and 2 decimals (``4.6634``,
    ``1,234.57``) is one of them when the value rounded to as many decimals is it;
    shorter numbers (counts, rounds, "1 ETH") are not told apart from chance.
    """
    found = []
    for token in re.findall(r"-?\d[\d,]*\.\d+", text):
        number = token.replace(",", "")
        places = len(number.split(".")[1])
        digits = len(number.lstrip("-0.").replace(".", ""))
        if places >= 2 and digits >= 4 and np.any(np.round(values, places) == float(number)):
            found.append(token)
    return found


def no_sideways_scroll(page: Any) -> None:
    page.wait_for_load_state("load")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    viewport = page.viewport_size["width"]
    wide = page.evaluate(
        """(w) => Array.from(document.querySelectorAll('body *'))
            .filter((e) => e.getBoundingClientRect().right > w)
            .slice(0, 6).map((e) => e.tagName + '.' + e.className + ' ' +
                             Math.round(e.getBoundingClientRect().right))""",
        viewport,
    )
    assert width <= viewport, f"{page.url} is {width} px wide in a {viewport} px window: {wide}"


def test_buyer_and_owners_trade_through_their_web_uis(
    market: Any, guarded: Any, screenshot: Any, tmp_path: Path
) -> None:
    password, rounds = market.password, market.rounds

    # -- an owner adds a dataset (a broken file first: the error says why, plainly)
    owner1 = guarded()
    log_in(owner1, market.owners[0], password)
    owner1.get_by_role("navigation").get_by_role("link", name="Datasets").click()
    expect(owner1.get_by_role("heading", name="diabetes")).to_be_visible()
    screenshot(owner1, "01-owner-datasets")
    owner1.get_by_label("CSV file", exact=True).set_input_files(
        files=[{"name": "broken.csv", "mimeType": "text/csv", "buffer": b"a,b,y\n1,2,3\n4,x,6\n"}]
    )
    owner1.get_by_role("button", name="Add dataset").click()
    expect(owner1.locator("#file-error")).to_have_text(
        re.compile(r"broken\.csv: non-numeric value in column .b. at row 2")
    )
    expect(owner1.get_by_label("CSV file", exact=True)).to_have_attribute("aria-invalid", "true")
    screenshot(owner1, "02-owner-dataset-error")
    rows = "\n".join(f"{i},{i % 7},{(i * 3) % 5}" for i in range(20))
    owner1.get_by_label("CSV file", exact=True).set_input_files(
        files=[
            {"name": "extra.csv", "mimeType": "text/csv", "buffer": f"x1,x2,z\n{rows}\n".encode()}
        ]
    )
    owner1.get_by_label("Name (optional)").fill("sensors")
    owner1.get_by_role("button", name="Add dataset").click()
    expect(owner1.locator("main > .flash-ok")).to_contain_text("Dataset sensors added (20 rows)")
    expect(owner1.get_by_role("heading", name="sensors")).to_be_visible()

    # -- the buyer logs in: a wrong password is refused, then the keyboard alone does it
    buyer = guarded()
    buyer.goto(market.buyer + "/")
    buyer.get_by_label("Password").fill("not the password")
    buyer.get_by_role("button", name="Log in").click()
    expect(buyer.locator("#login-error")).to_have_text("Wrong password.")
    screenshot(buyer, "03-login-wrong-password")
    expect(buyer.get_by_label("Password")).to_be_focused()
    buyer.keyboard.type(password)
    buyer.keyboard.press("Enter")
    expect(buyer.get_by_role("heading", name="Your training requests")).to_be_visible()
    buyer.keyboard.press("Tab")  # the first stop is the skip link, with a visible focus ring
    # The page's stylesheet may still be applying right after the login redirect: give
    # the ring a moment to be drawn before reading it (the assertion below still decides).
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    with contextlib.suppress(PlaywrightTimeoutError):
        buyer.wait_for_function(
            "() => getComputedStyle(document.activeElement).outlineStyle === 'solid'",
            timeout=5_000,
        )
    focused = buyer.evaluate(
        "() => [document.activeElement.textContent, getComputedStyle(document.activeElement)"
        ".outlineStyle]"
    )
    assert focused == ["Skip to content", "solid"], focused
    screenshot(buyer, "04-buyer-requests-empty")

    # -- a request form with mistakes: every wrong field says what is wrong
    buyer.get_by_role("navigation").get_by_role("link", name="New request").click()
    buyer.get_by_label("Owners needed").fill("1")
    buyer.get_by_label("Payment (ETH)").fill("a lot")
    buyer.get_by_role("button", name="Create request and pay").click()
    expect(buyer.locator("#form-errors")).to_contain_text("Please correct 4 fields")
    expect(buyer).to_have_url(re.compile(r"/ui/requests/new$"))  # post/redirect/get
    expect(buyer.locator("#features-error")).to_have_text(
        "Required: name at least one feature column."
    )
    expect(buyer.locator("#target-error")).to_have_text("Required: name the target column.")
    expect(buyer.locator("#owners-error")).to_have_text("Enter a number from 2 to 1000.")
    expect(buyer.locator("#payment_eth-error")).to_contain_text("Enter a number of ether")
    screenshot(buyer, "05-buyer-new-request-errors")
    buyer.get_by_label("Feature columns").fill(", ".join(market.features))
    buyer.get_by_label("Target column").fill(market.target)
    buyer.get_by_label("Minimum rows per owner").fill("50")
    buyer.get_by_label("Owners needed").fill("3")
    buyer.get_by_label("Training rounds").fill(str(rounds))
    buyer.get_by_label("Evaluate every").fill("1")  # a point on the chart every round
    buyer.get_by_label("Payment (ETH)").fill("1")
    buyer.get_by_label("Paillier key size (bits)").select_option("1024")
    screenshot(buyer, "06-buyer-new-request")
    buyer.get_by_role("button", name="Create request and pay").click()
    expect(buyer).to_have_url(re.compile(r"/ui/requests/1$"))
    expect(buyer.locator("main > .flash-ok")).to_contain_text(
        "Request 1 created and 1 ETH escrowed"
    )
    expect(buyer.locator(".stats [data-field=status]")).to_have_text("Looking for owners")
    # The challenge window, from the contract: a day (the form's default) once posted.
    expect(buyer.locator("[data-test=challenge]")).to_contain_text(
        "Once the result is posted on the contract, you and every seated owner have 24 h 0 min"
    )
    expect(buyer.locator("[data-test=challenge-window]")).to_have_text(
        "24 h 0 min after the result is posted"
    )
    screenshot(buyer, "07-buyer-request-open")

    # -- each owner sees the offer (its list updates by itself) and accepts it
    owners = [owner1, *(guarded() for _ in market.owners[1:])]
    for i, (page, url) in enumerate(zip(owners, market.owners, strict=True)):
        if i:
            log_in(page, url, password)
        else:
            page.get_by_role("navigation").get_by_role("link", name="Requests").click()
        row = page.locator('tr[data-request="1"]')
        expect(row.locator(".badge")).to_have_text("Offered to you")
        if i == 0:
            expect(row).to_contain_text("diabetes")
            screenshot(page, "08-owner-offers")
        row.get_by_role("button", name="Accept request 1").click()
        expect(page.locator("main > .flash-ok")).to_contain_text("You accepted request 1")
    screenshot(owners[-1], "09-owner-offers-accepted")

    # -- the buyer's chart grows round by round, without a reload
    status = buyer.locator(".stats [data-field=status]")
    # The page reloads once when training starts (its participants change); from then on
    # only its live parts change until the end: a mark on the window survives that.
    expect(buyer.locator("[data-live]")).to_have_attribute(
        "data-version", re.compile("^(IN_PROGRESS|FINISHED)"), timeout=60_000
    )
    buyer.evaluate("() => { window.__noReload = true; }")
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 240
    shot = False
    while time.monotonic() < deadline:
        state = live_state(buyer)
        if state is not None:
            seen.append(state)
            if state["status"] == "Finished":
                break
            if state["mark"] and state["points"] >= 3 and not shot:
                screenshot(buyer, "10-buyer-request-training")
                shot = True
        time.sleep(0.2)
    live = [s["points"] for s in seen if s["mark"]]
    assert live and max(live) > min(live), f"the chart did not grow without a reload: {seen}"
    expect(status).to_have_text("Finished")
    expect(buyer.locator("[data-chart] circle.point")).to_have_count(rounds + 1)
    improvement = buyer.locator(".stats [data-field=improvement_text]").text_content() or ""
    assert float(improvement.rstrip(" %")) > 10, improvement

    # -- evidence verified; contributions and payments; approve the settlement
    expect(buyer.locator("[data-test=verified]")).to_contain_text(
        "The evidence verifies", timeout=60_000
    )
    table = buyer.locator("[data-test=participants] tbody tr")
    expect(table).to_have_count(3 + 1)  # 3 owners, and the aggregator's fee
    expect(buyer.locator("[data-test=participants]")).to_contain_text("trainer")
    expect(buyer.locator("[data-test=participants]")).to_contain_text("validator")
    expect(buyer.locator("[data-test=refund]")).to_contain_text("ETH")
    # Until the buyer approves (by hand here), the window is open: its end, on the chain's
    # clock, and what can be done until then.
    challenge = buyer.locator("[data-test=challenge]")
    expect(challenge).to_contain_text(re.compile(r"Challenge window open until \d{4}-\d\d-\d\d "))
    expect(challenge).to_contain_text("you and every seated owner can approve or dispute")
    ends = re.search(r"until (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", challenge.text_content() or "")
    assert ends is not None
    ends_at = calendar.timegm(time.strptime(ends.group(1), "%Y-%m-%d %H:%M"))
    assert 23.9 * 3600 < ends_at - time.time() <= 24 * 3600 + 60, ends.group(1)
    buyer.get_by_role("button", name="Approve the settlement").click()
    expect(buyer.locator("main > .flash-ok")).to_contain_text("Settlement approved")
    expect(buyer.locator("[data-test=approved]")).to_be_visible()
    expect(challenge).to_contain_text("Settled on the contract")
    expect(challenge).to_contain_text("can no longer be disputed")

    # -- a trainer withdraws its earnings on its training page
    trainer = None
    for page in owners:
        reopen(page, page.url.split("/ui/")[0] + "/ui/requests/1")
        if page.locator("[data-test=role]").text_content() == "trainer":
            trainer = page
            break
    assert trainer is not None, "no owner page shows the trainer role"
    expect(trainer.locator("[data-chart] circle.point")).to_have_count(rounds + 1)
    expect(trainer.locator("[data-test=payment-state]")).to_contain_text("ready to withdraw")
    trainer.get_by_role("button", name=re.compile(r"^Withdraw ")).click()
    expect(trainer.locator("main > .flash-ok")).to_contain_text("Withdrew")
    expect(trainer.locator("[data-test=payment-state]")).to_contain_text("Withdrawn.")
    earned = trainer.locator("[data-test=earned]").text_content()
    screenshot(trainer, "11-owner-training")
    trainer.get_by_role("navigation").get_by_role("link", name="Requests").click()
    expect(trainer.locator("[data-test=total-earnings]")).to_have_text(earned or "")
    screenshot(trainer, "12-owner-offers-paid")

    # -- the buyer downloads the model and uses it
    reopen(buyer)
    expect(buyer.locator("[data-test=participants]")).to_contain_text("yes")  # withdrawn
    screenshot(buyer, "13-buyer-request")
    with buyer.expect_download() as download:
        buyer.get_by_role("link", name="Download the model (JSON)").click()
    path = tmp_path / "model.json"
    download.value.save_as(path)
    model = TrainedModel.load(path)
    data = load_dataset("diabetes")
    assert model.features == data.feature_names and model.rounds == rounds
    mse = float(np.mean((model.predict(data.X) - data.y) ** 2))
    assert mse < 0.8 * float(np.var(data.y)), mse

    # -- no data value and no weight in any page the aggregator or the buyer serves
    owner_values = np.concatenate(
        [
            np.loadtxt(
                market.work_dir / f"owner-{i + 1}" / "data" / "diabetes.csv",
                delimiter=",",
                skiprows=1,
            ).ravel()
            for i in range(len(market.owners))
        ]
    )
    weights = np.append(np.ravel(model.coef), np.ravel(model.intercept))
    buyer_pages = served(buyer, market.buyer, BUYER_PAGES)
    aggregator_pages = served(guarded(), market.aggregator, AGGREGATOR_PAGES)
    sample = f"{owner_values[np.argmax(decimals(owner_values))]:.4f}"
    assert leaked(f"<td>{sample}</td>", owner_values) == [sample]  # the check can fail
    assert "Approved by you (the buyer)" in buyer_pages[market.buyer + "/ui/requests/1"]
    for url, text in {**buyer_pages, **aggregator_pages}.items():
        assert leaked(text, owner_values) == [], url
    for url, text in aggregator_pages.items():
        assert leaked(text, weights) == [], url

    # -- the aggregator's public status pages
    public = guarded()
    public.goto(market.aggregator + "/")
    expect(public.get_by_role("heading", name="Marketplace status")).to_be_visible()
    expect(public.locator("tbody tr").first).to_contain_text("Finished")
    screenshot(public, "14-aggregator-requests")
    public.get_by_role("link", name="Request 1").click()
    expect(public.locator("[data-chart] circle.point")).to_have_count(rounds + 1)
    expect(public.locator("[data-test=transcript]")).to_have_text(
        re.compile(r"^Download the public transcript \(JSON lines, [\d.]+ (kB|MB)\)$")
    )
    screenshot(public, "15-aggregator-request")
    public.goto(market.aggregator + "/ui/no/such/page")  # a page, not raw JSON
    expect(public.get_by_role("heading", name="Not found")).to_be_visible()
    public.go_back()

    # -- readable on a phone: nothing scrolls sideways
    for page in (buyer, trainer, public):
        no_sideways_scroll(page)
    phone = guarded(390, 844)
    log_in(phone, market.buyer, password)
    phone.goto(market.buyer + "/ui/requests/1")
    expect(phone.locator("[data-chart] circle.point")).to_have_count(rounds + 1)
    no_sideways_scroll(phone)
    screenshot(phone, "16-phone-buyer-request")
    log_in(phone, market.owners[0], password)
    phone.wait_for_load_state("load")
    no_sideways_scroll(phone)
    screenshot(phone, "17-phone-owner-offers")

    buyer.get_by_role("navigation").get_by_role("link", name="Requests").click()
    expect(buyer.locator("tbody tr").first).to_contain_text("approved")
    screenshot(buyer, "18-buyer-requests")

    # -- log out: the session is over
    buyer.get_by_role("button", name="Log out").click()
    expect(buyer).to_have_url(re.compile(r"/ui/login\?bye=1$"))
    expect(buyer.locator("[data-test=logged-out]")).to_have_text(
        "You have logged out. Log in again to go on."
    )
    reopen(buyer, market.buyer + "/ui/requests/1")
    expect(buyer).to_have_url(re.compile(r"/ui/login\?next="))
