"""The demo's steps that any run of the marketplace reuses (the local processes of
``deltaml demo``, the compose stack): the money check and the summary, from plain values."""

from __future__ import annotations

import pytest

from deltaml.errors import DeltaMLValueError
from deltaml.services.demo import DemoResult, check_paid_in_full, report_lines
from deltaml.services.demo.steps import payees

BUYER = "0xB"
DEPOSIT = 10**18


def finished_view(refund: int) -> dict[str, object]:
    return {
        "status": "FINISHED",
        "chain_request_id": 1,
        "deposit_wei": DEPOSIT,
        "result": {"payouts_wei": {"0x1": "6", "0x2": "0", "0xA": "4"}, "refund_wei": refund},
    }


def test_who_withdraws_after_a_request_ends() -> None:
    assert payees(finished_view(refund=5), BUYER) == {"0x1", "0xA", BUYER}
    assert payees(finished_view(refund=0), BUYER) == {"0x1", "0xA"}  # nothing to refund
    assert payees({"status": "FAILED", "result": None}, BUYER) == {BUYER}


def test_payouts_and_refund_must_add_up_to_the_deposit() -> None:
    check_paid_in_full(DEPOSIT, {"0x1": 6 * 10**17, "0xA": 10**17}, 3 * 10**17)
    with pytest.raises(DeltaMLValueError, match=r"paid 999999999999999999 wei .* of a 10+ wei"):
        check_paid_in_full(DEPOSIT, {"0x1": 6 * 10**17, "0xA": 10**17}, 3 * 10**17 - 1)


def result(**changes: object) -> DemoResult:
    fields: dict[str, object] = {
        "status": "FINISHED",
        "seconds": 7.9,
        "startup_seconds": 9.5,
        "chain": "test chain",
        "test_mse": 3473.79,
        "sklearn_test_mse": 3467.24,
        "optimum_test_mse": 3467.24,
        "deposit_wei": DEPOSIT,
        "payouts_wei": {"0x1": 7 * 10**17, "0xA": 10**17},
        "refund_wei": 2 * 10**17,
        "contributions": {"0x1": 9.26},
        "metrics": {"3": 2484.0},
        "transcript": "t.jsonl",
        "verified": True,
        "owners": [{"name": "owner-1", "address": "0x1", "role": "trainer"}],
        "statuses": {},
        "urls": {"aggregator": "http://a", "buyer": "http://b"},
    }
    fields.update(changes)
    return DemoResult(**fields)  # type: ignore[arg-type]


def test_the_summary_is_lines_from_a_result_alone() -> None:
    lines = report_lines(result(), pages_note="the node's password")
    assert "test MSE 3473.79  vs the exact optimum 3467.24 (1.0019x)" in lines
    assert not any("scikit-learn" in line for line in lines)  # it equals the optimum here
    why = "it kept 9 of 10 directions"
    noted = report_lines(result(sklearn_test_mse=4000.0, baseline_note=why))
    assert f"  scikit-learn's LinearRegression: 4000.00 ({why})" in noted
    assert "  owner-1 (trainer): 700000000000000000" in lines
    assert "  aggregator 0xA: 100000000000000000" in lines
    assert "  refund to the buyer: 200000000000000000 of 1000000000000000000" in lines
    assert "evidence: verified — t.jsonl" in lines
    assert "web pages (the node's password):" in lines
    assert lines[-1] == "(stopped now; run with --serve to keep them up)"
    failed = report_lines(result(status="FAILED", test_mse=None, error="deadline passed"))
    assert failed[-2:] == [
        "no model: deadline passed",
        f"refunded to the buyer: 200000000000000000 of {DEPOSIT} wei",
    ]
