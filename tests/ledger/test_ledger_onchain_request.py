"""``OnChainRequest`` (the simulation's chain path) on the embedded chain: owners
join with their own keys, everyone approves verified evidence, and evidence that
failed verification is disputed and voided by the arbiter."""

from __future__ import annotations

import pytest

from deltaml.ledger import RequestStatus, compute_payouts, generate_account
from deltaml.marketplace import OnChainRequest

KEY = b"\x4b" * 32
DEPOSIT = 10**18 + 3


@pytest.mark.parametrize("verified", [True, False])
def test_onchain_request_settles_or_voids(verified: bool) -> None:
    trainers, validators = ["o1", "o2"], ["o3"]
    accounts = {pid: generate_account() for pid in ["buyer", "aggregator", *trainers, *validators]}
    request = OnChainRequest(None, accounts)
    rid = request.open(DEPOSIT, {"model": "linear"}, trainers, validators, key_hash=KEY)
    ledger = request._ledgers["buyer"]
    state = ledger.request(rid)
    assert state.key_hash == KEY
    assert state.arbiter == request.address("arbiter")
    assert state.challenge_window_s == 24 * 3600
    assert all(ledger.has_joined(rid, request.address(o)) for o in trainers + validators)
    expected = compute_payouts(DEPOSIT, 2_000_000, 1_000_000, [2, 1], 1)
    settlement = request.close(
        metrics={0: 2_000_000, 2: 1_000_000},
        initial_metric=2_000_000,
        final_metric=1_000_000,
        contribution_weights=[2, 1],
        evidence_hash=b"\xe7" * 32,
        evidence_verified=verified,
        expected=expected,
        trainers=trainers,
        validators=validators,
    )
    if verified:
        assert settlement.status == RequestStatus.SETTLED.name
        assert ledger.request(rid).approvals == 4
        assert settlement.withdrawn_wei == {
            "buyer": expected.refund,
            "aggregator": expected.aggregator,
            "o1": expected.trainers[0],
            "o2": expected.trainers[1],
            "o3": expected.validators[0],
        }
    else:
        assert settlement.status == RequestStatus.FAILED.name
        assert settlement.withdrawn_wei == {"buyer": DEPOSIT}
        assert [e.name for e in ledger.history(rid)][-4:] == [
            "RequestFinished",
            "Disputed",
            "Resolved",
            "Withdrawn",
        ]
