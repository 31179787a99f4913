"""The final record binds the settlement, and each check against the chain is named.

The chain is a fake reader here (the methods of a ``Ledger`` that verification
reads), built from what an honest contract would hold for the run; each test
changes one field of it and expects exactly one named failure. The same checks on
a real chain: ``tests/attacks/test_verify_chain.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from deltaml.evidence.chain import CHAIN_CHECKS, chain_id_of
from deltaml.evidence.signatures import sign_body
from deltaml.evidence.transcript import ChainBinding, record_hash
from deltaml.evidence.verify import (
    VerificationReport,
    check_against_chain,
    verify_records,
    verify_transcript,
)
from deltaml.ledger.payouts import compute_payouts
from deltaml.protocol.merkle import Binding, SeatBook
from evidence.chain_testkit import Run, bind, new_accounts, simulate

CHAIN_ID, CONTRACT, RID = 31337, "0x" + "c0" * 20, 7


@dataclass
class FakeState:
    buyer: str
    aggregator: str
    status: int
    deposit_wei: int
    deadline: int
    initial_metric: int
    final_metric: int
    spec_hash: bytes
    evidence_hash: bytes
    key_hash: bytes
    n_trainers: int = 0
    n_validators: int = 0
    seat_root: bytes = b""
    payout_root: bytes = b""
    payout_total_wei: int = 0


@dataclass
class FakeChain:
    """A read-only contract holding one request (and knowing its chain id).

    Like the real one it holds the seats and their payouts as Merkle roots
    (bound to its chain id, address and the request): the seat root of ``trainers``
    and ``validators``; the payout root of the split of ``payout_basis`` (deposit,
    metrics) among the honest seats by the ``posted`` contributions."""

    state: FakeState
    trainers: list[str]
    validators: list[str]
    posted: list[int]
    payout_basis: tuple[int, int, int]
    payees: tuple[list[str], list[str]]
    round_metrics: list[tuple[int, int]] = field(default_factory=list)
    contract_address: str = CONTRACT
    chain_id: int = CHAIN_ID
    reads: list[int] = field(default_factory=list)

    def request(self, request_id: int) -> FakeState:
        self.reads.append(request_id)
        binding = Binding(self.chain_id, self.contract_address, request_id)
        deposit, initial, final = self.payout_basis
        trainers, validators = self.payees
        split = compute_payouts(deposit, initial, final, self.posted, len(validators))
        book = SeatBook.from_payouts(trainers, validators, split.trainers, split.validators)
        return dataclasses.replace(
            self.state,
            n_trainers=len(self.trainers),
            n_validators=len(self.validators),
            seat_root=SeatBook.of(self.trainers, self.validators).seat_root(binding),
            payout_root=book.payout_root(binding),
            payout_total_wei=book.payout_total,
        )

    def history(self, request_id: int) -> list[Any]:
        joined = [
            SimpleNamespace(name="Joined", args={"owner": a})
            for a in [*self.trainers, *self.validators]
        ]
        return joined + [
            SimpleNamespace(name="MetricPosted", args={"round": k, "metric": v})
            for k, v in self.round_metrics
        ]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return simulate(tmp_path_factory.mktemp("run"), "run", new_accounts())


@pytest.fixture(scope="module")
def bound(run: Run, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    binding = ChainBinding(CHAIN_ID, CONTRACT, RID)
    return bind(run, binding, tmp_path_factory.mktemp("bound") / "run.jsonl")


def honest_chain(run: Run, head: str) -> FakeChain:
    final = run.final
    return FakeChain(
        FakeState(
            buyer=run.address("buyer"),
            aggregator=run.address("aggregator"),
            status=3,  # Finished
            deposit_wei=int(run.header["spec"]["deposit_wei"]),
            deadline=2_000_000_000,
            initial_metric=int(final["initial_metric"]),
            final_metric=int(final["final_metric"]),
            spec_hash=run.spec_hash,
            evidence_hash=bytes.fromhex(head),
            key_hash=run.key_hash,
        ),
        run.trainers,
        run.validators,
        list(final["contribution_weights"]),
        (
            int(run.header["spec"]["deposit_wei"]),
            int(final["initial_metric"]),
            int(final["final_metric"]),
        ),
        (run.trainers, run.validators),
        [(int(final["final_round"]), int(final["final_metric"]))],  # as postMetric posts it
    )


def _check(path: Path, chain: FakeChain, rid: int = RID) -> VerificationReport:
    return check_against_chain(verify_transcript(path), chain, rid)


def test_the_final_record_carries_what_settlement_depends_on(run: Run) -> None:
    final = run.final
    assert final["kind"] == "Payouts" and run.records[-1]["type"] == "Payouts"
    assert final["seats"] == {"trainers": run.trainers, "validators": run.validators}
    assert final["key_fingerprint"] == run.key_hash.hex()
    assert final["chain"] is None  # this run was escrowed nowhere
    for name in ("initial_metric", "final_metric", "contribution_weights", "deposit_wei"):
        assert name in final
    report = verify_transcript(run.path)
    assert report.ok and report.settlement is not None
    s = report.settlement
    assert (s.buyer, s.aggregator) == (run.address("buyer"), run.address("aggregator"))
    assert list(s.trainers) == run.trainers and list(s.validators) == run.validators
    assert s.key_fingerprint == run.key_hash.hex() and s.spec_hash == run.spec_hash.hex()
    assert list(s.contributions) == final["contribution_weights"]
    assert s.chain_id is None and s.contract is None and s.request_id is None


def test_the_honest_chain_passes_every_named_check(run: Run, bound: tuple[Path, str]) -> None:
    path, head = bound
    chain = honest_chain(run, head)
    report = _check(path, chain)
    assert report.ok, [str(f) for f in report.failures]
    assert chain.reads == [RID]
    assert all(report.passed[check] == 1 for check in CHAIN_CHECKS)  # no stop: any deadline
    assert report.chain == {
        "chain_id": CHAIN_ID,
        "contract": CONTRACT,
        "request_id": RID,
        "status": "Finished",
    }
    assert f"checked against request {RID} of contract {CONTRACT}" in "\n".join(report.lines())


def _other_address() -> str:
    return "0x" + "ab" * 20


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (lambda c: setattr(c.state, "evidence_hash", b"\x01" * 32), "evidence hash"),
        (lambda c: setattr(c.state, "key_hash", b"\x02" * 32), "key fingerprint"),
        (lambda c: setattr(c.state, "buyer", _other_address()), "buyer"),
        (lambda c: setattr(c.state, "aggregator", _other_address()), "aggregator"),
        (lambda c: setattr(c, "trainers", [_other_address(), *c.trainers[1:]]), "seats"),
        (lambda c: setattr(c, "validators", [*c.validators, _other_address()]), "seats"),
        (lambda c: setattr(c.state, "spec_hash", b"\x03" * 32), "spec hash"),
        (lambda c: setattr(c.state, "deposit_wei", c.state.deposit_wei + 1), "deposit"),
        (lambda c: setattr(c, "chain_id", 1), "chain binding"),
        (lambda c: setattr(c, "contract_address", _other_address()), "chain binding"),
        (lambda c: setattr(c.state, "final_metric", c.state.final_metric - 1), "metrics"),
        (lambda c: setattr(c.state, "initial_metric", c.state.initial_metric + 1), "metrics"),
        (lambda c: setattr(c, "posted", [*c.posted[1:], c.posted[0]]), "contributions"),
        (lambda c: setattr(c, "round_metrics", [(c.round_metrics[0][0], 1)]), "metrics"),
        (lambda c: setattr(c, "round_metrics", [(1, 1)]), "metrics"),  # round 1: no metric
        (lambda c: setattr(c.state, "status", 2), "chain status"),  # InProgress
    ],
)
def test_each_difference_from_the_chain_is_one_named_failure(
    run: Run, bound: tuple[Path, str], change: Any, check: str
) -> None:
    path, head = bound
    chain = honest_chain(run, head)
    if check == "contributions" and len(set(chain.posted)) == 1:
        pytest.fail("the run's contributions are all equal: rotating them changes nothing")
    change(chain)
    report = _check(path, chain)
    assert report.failed_checks() == {check}, [str(f) for f in report.failures]
    (failure,) = report.failures
    assert failure.record is None and str(failure).startswith(f"transcript: {check}: ")


def test_another_request_id_is_a_binding_failure(run: Run, bound: tuple[Path, str]) -> None:
    path, head = bound
    report = _check(path, honest_chain(run, head), RID + 1)
    assert report.failed_checks() == {"chain binding"}
    assert f"names request {RID}, not {RID + 1}" in str(report.failures[0])


def test_a_transcript_escrowed_nowhere_fails_against_a_chain(run: Run) -> None:
    chain = honest_chain(run, record_hash(run.records[-1]))
    report = _check(run.path, chain)
    assert report.failed_checks() == {"chain binding"}
    assert "names no chain" in str(report.failures[0])


def test_without_a_chain_the_report_says_so(run: Run) -> None:
    report = verify_transcript(run.path)
    assert report.ok and report.chain is None and report.to_json()["chain"] is None
    assert any("NOT checked against a chain" in line for line in report.lines())


def _resigned_final(run: Run, **changes: Any) -> list[dict[str, Any]]:
    records = [dict(r) for r in run.records]
    final = dict(records[-1])
    final["body"] = {**final["body"], **changes}
    final["signature"] = sign_body(run.accounts["aggregator"], final["body"])
    records[-1] = final
    return records


@pytest.mark.parametrize(
    "changes",
    [
        {"key_fingerprint": "00" * 32},
        {"seats": {"trainers": ["0x" + "ab" * 20], "validators": []}},
    ],
    ids=["key fingerprint", "seats"],
)
def test_a_final_record_that_contradicts_its_header_fails_alone(
    run: Run, changes: dict[str, Any]
) -> None:
    """The aggregator signs a final record whose seats or key are not the header's."""
    report = verify_records(_resigned_final(run, **changes), None)
    assert report.failed_checks() == {"final record"}
    assert report.failures[0].record == len(run.records) - 1


@pytest.mark.parametrize(
    "changes",
    [
        {"chain": {"chain_id": "1", "contract": CONTRACT, "request_id": 1, "requirements": None}},
        {"seats": None},
    ],
    ids=["chain", "seats"],
)
def test_a_malformed_binding_is_a_format_failure(run: Run, changes: dict[str, Any]) -> None:
    report = verify_records(_resigned_final(run, **changes), None)
    assert "format" in report.failed_checks() and report.settlement is None


def test_chain_id_of_reads_a_ledger_or_its_chain() -> None:
    assert chain_id_of(dataclasses.make_dataclass("L", [("chain_id", int)])(5)) == 5
    chain = dataclasses.make_dataclass("C", [("chain_id", int)])(9)
    assert chain_id_of(dataclasses.make_dataclass("L", [("chain", object)])(chain)) == 9
    assert chain_id_of(object()) is None
