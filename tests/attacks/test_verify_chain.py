"""Issue 10, point 5: verification reads the chain, not the transcript's own header.

A malicious aggregator controls what it posts on chain and signs the transcript's
final record. Each test builds a real request on a deployed Marketplace (the
in-process embedded chain, and anvil when installed), lets the aggregator post
something the evidence does not give, and checks that the buyer's check —
:func:`~deltaml.evidence.verify.verify_against_chain`, what ``BuyerNode.verify``,
the owners and ``deltaml arbiter resolve`` run — fails on the named check, while the
same transcript passes every check of the transcript alone (what verification did
before: it never looked at the chain).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account import Account

from deltaml.evidence.verify import VerificationReport, verify_against_chain, verify_transcript
from deltaml.ledger.accounts import fund_from_dev_account, generate_account
from deltaml.ledger.chain import Chain, RpcChain
from deltaml.ledger.embedded import EmbeddedChain
from deltaml.ledger.web3_ledger import Web3Ledger
from evidence.chain_testkit import ETH, Escrow, Run, bind, new_accounts, simulate


@pytest.fixture(scope="module", params=["embedded", "anvil"])
def chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    backend: Chain
    if request.param == "embedded":
        backend = EmbeddedChain()
    else:
        backend = RpcChain(request.getfixturevalue("anvil_url"))
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="module")
def escrow(chain: Chain) -> Escrow:
    deployer = generate_account()
    fund_from_dev_account(chain, deployer.address, 10 * ETH, demo=True)
    return Escrow(Web3Ledger.deploy(chain, deployer), arbiter=Account.create())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Run ``a``, the request's; ``same_parties``: the same buyer, aggregator and owners
    under another Paillier key; ``unrelated``: another buyer and other owners, the same
    aggregator."""
    folder = tmp_path_factory.mktemp("runs")
    accounts = new_accounts()
    a = simulate(folder, "a", accounts)
    same_parties = simulate(folder, "same-parties", accounts)
    unrelated = simulate(folder, "unrelated", new_accounts(aggregator=accounts["aggregator"]), 2)
    return SimpleNamespace(a=a, same_parties=same_parties, unrelated=unrelated)


def _honest(escrow: Escrow, run: Run, folder: Path) -> tuple[int, Path]:
    rid = escrow.open(run)
    path, head = bind(run, escrow.binding(rid), folder / "bound.jsonl")
    escrow.finish(run, rid, head)
    return rid, path


def _failed(report: VerificationReport) -> set[str]:
    return report.failed_checks()


def test_an_honest_transcript_verifies_against_its_request(
    escrow: Escrow, runs: SimpleNamespace, tmp_path: Path
) -> None:
    rid, path = _honest(escrow, runs.a, tmp_path)
    report = verify_against_chain(path, escrow.ledger, rid)
    assert report.ok, [str(f) for f in report.failures]
    assert report.chain is not None and report.chain["request_id"] == rid
    for check in ("evidence hash", "key fingerprint", "seats", "spec hash", "metrics"):
        assert report.passed[check] == 1, check


# -- (a) a transcript re-signed from another run ---------------------------------------
@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ("same_parties", {"key fingerprint"}),
        # with its own split seed: its spec is not the request's either
        # (and other seats: other payouts)
        ("unrelated", {"key fingerprint", "seats", "buyer", "spec hash", "contributions"}),
    ],
)
def test_a_transcript_re_signed_from_another_run_fails_against_the_chain(
    escrow: Escrow, runs: SimpleNamespace, tmp_path: Path, other: str, expected: set[str]
) -> None:
    """The aggregator escrows run ``a``'s request but hands in another run's
    transcript, its final record re-signed to name this request, and posts its head
    and numbers: self-consistent, so the transcript alone verifies."""
    rid = escrow.open(runs.a)
    forged: Run = getattr(runs, other)
    path, head = bind(forged, escrow.binding(rid), tmp_path / "forged.jsonl")
    escrow.finish(forged, rid, head)
    assert verify_transcript(path).ok  # what the buyer's check was before
    report = verify_against_chain(path, escrow.ledger, rid)
    assert _failed(report) == expected, [str(f) for f in report.failures]
    assert "evidence hash" not in _failed(report)  # the head is the one posted


def test_a_transcript_bound_to_another_request_fails(
    escrow: Escrow, runs: SimpleNamespace, tmp_path: Path
) -> None:
    """The honest transcript of one request offered as the evidence of another of the
    same parties: its final record names the other request."""
    rid, path = _honest(escrow, runs.a, tmp_path)
    second = escrow.open(runs.a)
    escrow.finish(runs.a, second, verify_transcript(path).head)
    report = verify_against_chain(path, escrow.ledger, second)
    assert _failed(report) == {"chain binding"}
    assert f"names request {rid}, not {second}" in str(report.failures[0])


# -- (b) numbers on chain the evidence does not give -----------------------------------
@pytest.mark.parametrize("what", ["final metric", "contributions", "round metric"])
def test_posting_numbers_the_transcript_does_not_give_fails(
    escrow: Escrow, runs: SimpleNamespace, tmp_path: Path, what: str
) -> None:
    """The aggregator posts a better final metric (a larger pool for the trainers, a
    smaller refund), other contributions than the proven ones, or a better metric for
    a round (the public record of the training)."""
    run = runs.a
    rid = escrow.open(run)
    path, head = bind(run, escrow.binding(rid), tmp_path / "bound.jsonl")
    weights = list(run.final["contribution_weights"])
    if what == "final metric":
        # the payout root posted with it is the split by that metric: both differ
        escrow.finish(run, rid, head, final_metric=int(run.final["final_metric"]) // 2)
        expected = {"metrics", "contributions"}
    elif what == "contributions":
        escrow.finish(run, rid, head, contributions=[sum(weights), *[0] * (len(weights) - 1)])
        expected = {"contributions"}
    else:  # a round's metric posted better than it was (the final one stays right)
        last = int(run.final["final_round"])
        escrow.finish(run, rid, head, round_metrics={last: int(run.final["final_metric"]) // 2})
        expected = {"metrics"}
    assert verify_transcript(path).ok
    report = verify_against_chain(path, escrow.ledger, rid)
    assert _failed(report) == expected, [str(f) for f in report.failures]


# -- (c) seats on chain other than the transcript's -----------------------------------
@pytest.mark.parametrize("how", ["reordered", "sybil"])
def test_a_transcript_naming_other_seats_than_the_chain_fails(
    escrow: Escrow, runs: SimpleNamespace, tmp_path: Path, how: str
) -> None:
    """The aggregator seats on chain other owners than those its transcript names: the
    same in another order (the seat root commits the set of seats, but contributions
    are paid by seat: the payout root differs), or one of its own addresses in a
    trainer's seat (other seats, other payees)."""
    run = runs.a
    trainers: list[Any] = [run.accounts[t] for t in run.header["trainers"]]
    if how == "reordered":
        trainers = trainers[::-1]
    else:
        trainers[0] = Account.create()
    rid = escrow.open(run, trainers=trainers)
    path, head = bind(run, escrow.binding(rid), tmp_path / "bound.jsonl")
    escrow.finish(run, rid, head)
    assert verify_transcript(path).ok
    report = verify_against_chain(path, escrow.ledger, rid)
    expected = {"contributions"} if how == "reordered" else {"seats", "contributions"}
    assert _failed(report) == expected, [str(f) for f in report.failures]


def test_a_final_record_re_signed_to_the_chain_seats_still_fails(
    escrow: Escrow, runs: SimpleNamespace, tmp_path: Path
) -> None:
    """The aggregator seats a Sybil on chain and re-signs its final record to name
    the chain's seats; the header (and the owners' signatures) still name the real
    trainers: the final record contradicts the header, and the seats the chain."""
    run = runs.a
    trainers: list[Any] = [run.accounts[t] for t in run.header["trainers"]]
    trainers[0] = Account.create()
    rid = escrow.open(run, trainers=trainers)
    chain_seats = {
        "trainers": [str(a.address) for a in trainers],
        "validators": run.validators,
    }
    forged = Run(run.path, [dict(r) for r in run.records], run.accounts)
    forged.records[-1] = {
        **forged.records[-1],
        "body": {**forged.records[-1]["body"], "seats": chain_seats},
    }
    path, head = bind(forged, escrow.binding(rid), tmp_path / "forged.jsonl")
    escrow.finish(run, rid, head)
    report = verify_against_chain(path, escrow.ledger, rid)
    expected = {"final record", "seats", "contributions"}
    assert _failed(report) == expected, [str(f) for f in report.failures]


# -- the buyer node's own check ----------------------------------------------------------
def _buyer_node(tmp_path: Path, run: Run, ledger: Web3Ledger, rid: int, transcript: Path) -> Any:
    """A buyer node (not started) whose aggregator serves ``transcript`` for request 1."""
    import httpx

    from deltaml.services.buyer import BuyerConfig, BuyerNode

    head = verify_transcript(transcript).head

    def aggregator(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/requests/1/transcript":
            return httpx.Response(200, content=transcript.read_bytes())
        if request.url.path == "/requests/1":
            view = {"id": 1, "status": "FINISHED", "chain_request_id": rid}
            return httpx.Response(200, json={**view, "result": {"transcript_head": head}})
        return httpx.Response(404, json={"detail": "not found"})

    account = run.accounts["buyer"]
    node = BuyerNode(
        BuyerConfig(
            account=account,
            aggregator_url="http://aggregator.invalid",
            database_url=f"sqlite:///{tmp_path / 'buyer.sqlite'}",
            work_dir=tmp_path,
            key_password="pw",
        )
    )
    node.client.http = httpx.Client(
        base_url="http://aggregator.invalid", transport=httpx.MockTransport(aggregator)
    )
    node.ledger = ledger
    node.store.put("requests", "1", {"chain_request_id": rid})
    return node


def test_the_buyer_node_refuses_a_re_signed_transcript_of_another_run(
    escrow: Escrow, runs: SimpleNamespace, tmp_path: Path
) -> None:
    """The attack of issue 10: a re-signed transcript of an unrelated run passed the
    buyer's check. ``BuyerNode.verify`` now reads the request from the chain."""
    rid = escrow.open(runs.a)
    path, head = bind(runs.unrelated, escrow.binding(rid), tmp_path / "forged.jsonl")
    escrow.finish(runs.unrelated, rid, head)
    buyer_ledger = escrow.party(runs.a.accounts["buyer"], None)
    node = _buyer_node(tmp_path, runs.a, buyer_ledger, rid, path)
    try:
        report = node.verify(1)
    finally:
        node.client.close()
    assert not report.ok
    assert {"key fingerprint", "seats", "buyer"} <= report.failed_checks()


def test_the_buyer_node_accepts_its_honest_transcript(
    escrow: Escrow, runs: SimpleNamespace, tmp_path: Path
) -> None:
    rid, path = _honest(escrow, runs.a, tmp_path)
    node = _buyer_node(tmp_path, runs.a, escrow.party(runs.a.accounts["buyer"], None), rid, path)
    try:
        report = node.verify(1)
    finally:
        node.client.close()
    assert report.ok, [str(f) for f in report.failures]
    assert report.chain is not None and report.chain["request_id"] == rid
