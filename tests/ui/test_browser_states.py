"""The pages tell the truth, explain the money and work on a phone (issue 17), in a
real browser against a real marketplace of node processes.

A buyer's request that no owner can serve is refused before anything is escrowed;
the buyer's list picks up a new request by itself; the aggregator's Owners column
counts accepted owners only; an owner that accepts after the training started is
refused by its own node (the escrow is no longer open: one escrow, one training)
and reads "Closed" on its offer list and training page; at 390×844 an offer's
reward and its Accept / Decline, and a participant's contribution and payment, are
on the screen without scrolling sideways. Phone-width screenshots of the owner's
training page and the buyer's request page are saved under ``test-artifacts/ui/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser_testkit import reopen

pytestmark = pytest.mark.slow

PHONE = (390, 844)
expect: Any = None


@pytest.fixture(autouse=True)
def _expect(chromium: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=30_000)
    expect = playwright_expect


def log_in(page: Any, url: str, password: str) -> None:
    page.goto(url + "/")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("main > .flash-ok")).to_have_text("Logged in.")


def on_screen(page: Any, locator: Any) -> None:
    """``locator`` is inside the window once scrolled to (not cut off at the side)."""
    locator.scroll_into_view_if_needed()
    expect(locator).to_be_in_viewport()
    box = locator.bounding_box()
    width = page.viewport_size["width"]
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width


def accept_by_api(owner_url: str, work_dir: Path, rid: int) -> httpx.Response:
    """Accept as an owner node's own API does (as ``--accept all`` nodes do, late)."""
    token = (work_dir / "api-token").read_text().strip()
    return httpx.post(
        f"{owner_url}/offers/{rid}/accept",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,
    )


def test_pages_tell_the_truth_explain_the_money_and_fit_a_phone(
    market: Any, guarded: Any, screenshot: Any
) -> None:
    password = market.password

    # -- the buyer's list is open in one window; the form in another
    listing = guarded()
    log_in(listing, market.buyer, password)
    expect(listing.get_by_role("heading", name="Your training requests")).to_be_visible()
    buyer = guarded()
    log_in(buyer, market.buyer, password)
    buyer.goto(market.buyer + "/ui/requests/new")

    # -- a request nobody can serve: the live count says so, the server refuses it,
    #    and nothing is escrowed (no request appears anywhere)
    buyer.get_by_label("Feature columns").fill("foo, bar")
    buyer.get_by_label("Target column").fill("zzz")
    expect(buyer.locator("[data-test=market-count]")).to_contain_text(
        "0 owners have these columns and at least 1 row."
    )
    buyer.get_by_label("Paillier key size (bits)").select_option("1024")
    buyer.get_by_role("button", name="Create request and pay").click()
    expect(buyer).to_have_url(re.compile(r"/ui/requests/new$"))
    expect(buyer.locator("#form-errors")).to_contain_text(
        "No data owner has the columns foo, bar, zzz and at least 1 rows"
    )
    expect(buyer.locator("#form-errors")).to_contain_text("Nothing was escrowed.")
    assert httpx.get(market.aggregator + "/requests", trust_env=False).json() == []

    # -- a request three owners can serve (it needs two): the count shows it as typed
    buyer.get_by_label("Feature columns").fill(", ".join(market.features))
    buyer.get_by_label("Target column").fill(market.target)
    buyer.get_by_label("Owners needed").fill("2")
    expect(buyer.locator("[data-test=market-count]")).to_contain_text("3 owners have these columns")
    buyer.get_by_label("Training rounds").fill("2")
    buyer.get_by_label("Evaluate every").fill("1")
    buyer.get_by_label("Paillier key size (bits)").select_option("1024")
    buyer.get_by_role("button", name="Create request and pay").click()
    expect(buyer).to_have_url(re.compile(r"/ui/requests/\d+$"))
    rid = int(buyer.url.rsplit("/", 1)[1])

    # -- the list, open all along, shows it without anyone reloading
    expect(listing.locator(f'tr[data-request="{rid}"]')).to_be_visible(timeout=20_000)

    # -- the aggregator counts no owner yet: three were offered it, none accepted
    public = guarded()
    public.goto(market.aggregator + "/ui/")
    owners_cell = public.locator(f'tr[data-request="{rid}"] [data-test=owners]')
    expect(owners_cell).to_have_text("0 / 2")

    # -- on a phone, an offer's reward and Accept / Decline are on the screen
    phone_owner = guarded(*PHONE)
    log_in(phone_owner, market.owners[2], password)
    offer = phone_owner.locator(f'tr[data-request="{rid}"]')
    on_screen(phone_owner, offer.locator("[data-test=reward]"))
    expect(offer.locator("[data-test=reward]")).to_contain_text("up to 0.7 ETH")
    on_screen(phone_owner, offer.get_by_role("button", name=f"Accept request {rid}"))
    on_screen(phone_owner, offer.get_by_role("button", name=f"Decline request {rid}"))
    screenshot(phone_owner, "19-phone-owner-offer", full_page=False)

    # -- two owners accept: the count follows; the training starts
    owners = [guarded(), guarded()]
    for i, page in enumerate(owners):
        log_in(page, market.owners[i], password)
        page.locator(f'tr[data-request="{rid}"]').get_by_role(
            "button", name=f"Accept request {rid}"
        ).click()
        expect(page.locator("main > .flash-ok")).to_contain_text(f"You accepted request {rid}")
        if i == 0:
            expect(owners_cell).to_have_text("1 / 2", timeout=20_000)
    # The third owner accepts late, as a node that accepts by itself would: its own node
    # refuses to join an escrow whose training has started (one escrow, one training).
    late_accept = accept_by_api(market.owners[2], market.work_dir / "owner-3", rid)
    assert late_accept.status_code == 400, late_accept.text
    assert "IN_PROGRESS on chain, not OPEN" in late_accept.text, late_accept.text

    # -- the buyer's page follows the training to its end
    expect(buyer.locator(".stats [data-field=status]")).to_have_text("Finished", timeout=240_000)
    expect(buyer.locator("[data-test=verified]")).to_contain_text(
        "The evidence verifies", timeout=60_000
    )
    buyer.get_by_role("button", name="Approve the settlement").click()
    expect(buyer.locator("[data-test=approved]")).to_be_visible()
    expect(buyer.locator("[data-test=duration]")).to_be_visible()
    expect(buyer.locator("[data-test=timeline]")).to_contain_text("Training finished")
    expect(buyer.locator("[data-test=escrow]")).to_contain_text("Paid out")
    chain = buyer.locator("[data-test=chain]")  # the contract's own record, transaction by one
    expect(chain).to_contain_text("Request created: 1 ETH escrowed")
    expect(chain).to_contain_text("Training started: 2 owners seated")
    expect(chain).to_contain_text("Round 2 MSE posted")
    expect(chain).to_contain_text("Approved by you (the buyer)")
    expect(chain).to_contain_text("Settled: approved by the buyer and every seated owner")
    # The refused late owner never joined: the buyer lists the two seated owners only.
    expect(buyer.locator("[data-test=participants] tbody tr[data-owner]")).to_have_count(2)

    # -- the late owner: "Closed" on its offer list and training page, no Accept / Decline
    reopen(phone_owner)
    offer = phone_owner.locator(f'tr[data-request="{rid}"]')
    expect(offer.locator(".badge")).to_have_text("Closed")
    expect(offer).to_contain_text("The training started with other owners.")
    expect(offer.get_by_role("button")).to_have_count(0)
    reopen(phone_owner, f"{market.owners[2]}/ui/requests/{rid}")
    expect(phone_owner.locator("[data-test=role]")).to_have_text("not taking part")
    expect(phone_owner.locator("[data-test=earned]")).to_have_text("nothing")
    expect(phone_owner.locator("[data-test=payment-state]")).to_contain_text(
        "Nothing to withdraw: the training started with other owners."
    )
    assert "not measured yet" not in (phone_owner.text_content("main") or "")

    # -- the aggregator's page: the finished request still counts its two owners
    expect(owners_cell).to_have_text("2 / 2", timeout=20_000)

    # -- on a phone, each participant's contribution and payment are on the screen
    phone_buyer = guarded(*PHONE)
    log_in(phone_buyer, market.buyer, password)
    reopen(phone_buyer, f"{market.buyer}/ui/requests/{rid}")
    rows = phone_buyer.locator("[data-test=participants] tbody tr[data-owner]")
    expect(rows).to_have_count(2)
    trainer = rows.filter(has_text="trainer").first
    on_screen(phone_buyer, trainer.locator("[data-test=contribution]"))
    expect(trainer.locator("[data-test=contribution]")).to_contain_text("rank 1 of 1")
    on_screen(phone_buyer, trainer.locator("[data-test=payment]"))
    expect(trainer.locator("[data-test=payment]")).to_contain_text("ETH")
    screenshot(phone_buyer, "20-phone-buyer-request")
    header = phone_buyer.locator(".site-header").bounding_box()
    assert header is not None and header["height"] < 60, header  # one line on a phone
    phone_buyer.evaluate(
        "() => document.getElementById('people-title').scrollIntoView({block: 'start'})"
    )
    screenshot(phone_buyer, "20-phone-buyer-request-screen", full_page=False)

    # -- the trainer's own page on a phone: its share, rank and how its pay was computed
    for i, url in enumerate(market.owners[:2]):
        page = guarded(*PHONE)
        log_in(page, url, password)
        reopen(page, f"{url}/ui/requests/{rid}")
        if page.locator("[data-test=role]").text_content() == "trainer":
            expect(page.locator("[data-test=earned-how]")).to_contain_text(
                "your share of it is 100.0 %"
            )
            on_screen(page, page.locator("[data-test=earned]"))
            header = page.locator(".site-header").bounding_box()
            assert header is not None and header["height"] < 60, header
            page.evaluate("() => window.scrollTo(0, 0)")
            screenshot(page, "21-phone-owner-training")
            screenshot(page, "21-phone-owner-training-screen", full_page=False)
            break
        assert i == 0, "neither seated owner's page shows the trainer role"


def test_the_exact_solve_keeps_the_contributions_box(market: Any, guarded: Any) -> None:
    """One exact solve measures contributions too (each trainer's part of the model)."""
    buyer = guarded()
    log_in(buyer, market.buyer, market.password)
    buyer.goto(market.buyer + "/ui/requests/new")
    box = buyer.get_by_label("Measure each trainer's contribution")
    expect(box).to_be_checked()
    buyer.get_by_label("Training", exact=True).select_option("exact")
    expect(box).to_be_checked()
    expect(box).to_be_enabled()
