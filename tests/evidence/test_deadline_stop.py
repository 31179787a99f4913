"""A run the aggregator stopped early for the deadline verifies; a misplaced stop does not.

The aggregator service stops after an evaluated round when the next one could not
finish before the deadline (``deltaml.services.aggregator``): it records a signed
``DeadlineStop`` and finishes as if the spec had that many rounds. This drives the
roles the same way, in process, and checks what the verifier accepts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from eth_account import Account

from deltaml.crypto.paillier import key_fingerprint
from deltaml.evidence.chain import chain_failures
from deltaml.evidence.signatures import sign_body
from deltaml.evidence.transcript import GENESIS, TranscriptWriter, record_hash
from deltaml.evidence.verify import VerificationReport, verify_records
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.protocol.messages import TrainingSpec
from deltaml.protocol.records import DeadlineStop
from deltaml.roles import DataOwner, ModelBuyer
from deltaml.roles.aggregator import Aggregator, Checkpoint, RoundRecord, split_roles
from deltaml.roles.buyer import Seats
from deltaml.simulation import owner_ids
from deltaml.transport import InMemoryTransport

ROUNDS, STOP, EVERY, DEADLINE = 6, 2, 2, 1_900_000_000


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def stopped() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records of a run stopped after round ``STOP`` of ``ROUNDS``, and its accounts."""
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, 4, seed=0)
    ids = owner_ids(4)
    accounts = {pid: Account.create() for pid in ["buyer", "aggregator", *ids]}
    spec = TrainingSpec(model="linear", rounds=ROUNDS, eval_every=EVERY)
    buyer = ModelBuyer("buyer", spec, 512, allow_test_keys=True, account=accounts["buyer"])
    committed = key_fingerprint(buyer.public_key)
    owners = [
        DataOwner(oid, s.X, s.y, account=accounts[oid], committed_key=committed)
        for oid, s in zip(ids, shares, strict=True)
    ]
    seated = split_roles(ids, spec.trainer_fraction, spec.split_seed)
    buyer.seats = Seats.of(*seated, {pid: str(a.address) for pid, a in accounts.items()})
    writer = TranscriptWriter(keep=True)
    aggregator = Aggregator(
        InMemoryTransport([buyer, *owners]),
        "buyer",
        ids,
        account=accounts["aggregator"],
        addresses={pid: str(a.address) for pid, a in accounts.items()},
        transcript=writer,
    )
    latest: list[Checkpoint] = []

    def progress(rec: RoundRecord) -> None:
        if rec.round == STOP:
            cp = latest[0]
            aggregator.evidence.record(
                DeadlineStop(
                    round=STOP,
                    deadline=DEADLINE,
                    at=DEADLINE - 60,
                    round_seconds=1.0,
                    margin_seconds=30,
                    next_evaluated_round=4,
                )
            )
            cp.transcript_head = aggregator.evidence.head
            cp.transcript_count = writer.count
            raise Stop

    n = shares[0].n_features
    initial = buyer.initial_model(n + 1)
    with pytest.raises(Stop):
        aggregator.train(
            spec,
            buyer.public_key,
            initial,
            n,
            True,
            progress,
            checkpoint=lambda cp: latest.__setitem__(slice(None), [cp]),
        )
    aggregator.train(
        dataclasses.replace(spec, rounds=STOP),
        buyer.public_key,
        initial,
        n,
        True,
        checkpoint=lambda cp: None,
        resume=latest[0],
    )
    return writer.records, accounts


def _rechain(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    prev = GENESIS
    for seq, record in enumerate(records):
        record["seq"], record["prev"] = seq, prev
        prev = record_hash(record)
    return records


def _report(records: list[dict[str, Any]]) -> VerificationReport:
    return verify_records(records, None)


def test_a_run_stopped_for_the_deadline_verifies(
    stopped: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    records, _ = stopped
    kinds = [r["type"] for r in records]
    stop = kinds.index("DeadlineStop")
    assert kinds.index("ContributionRequest") > stop and kinds[-1] == "Payouts"
    assert records[0]["body"]["spec"]["rounds"] == ROUNDS
    assert records[-1]["body"]["final_round"] == STOP
    report = _report(records)
    assert report.ok, [str(f) for f in report.failures]
    assert report.passed["stopping"] == 1 and sorted(report.metrics) == [0, STOP]
    assert report.settlement is not None and report.settlement.deadline == DEADLINE


def test_the_deadline_stopped_for_must_be_the_requests(
    stopped: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    from deltaml.evidence.chain import OnChainRequest
    from deltaml.evidence.roots import settlement_book
    from deltaml.protocol.merkle import Binding

    records, _ = stopped
    report = _report(records)
    s = report.settlement
    assert s is not None

    def chain(deadline: int) -> OnChainRequest:
        book = settlement_book(s)
        assert not isinstance(book, str)
        binding = Binding(1, "0x" + "00" * 20, 1)
        return OnChainRequest(
            1,
            binding.contract,
            binding.request_id,
            3,
            s.buyer,
            s.aggregator,
            s.key_fingerprint,
            s.spec_hash,
            report.head,
            s.deposit_wei,
            deadline,
            s.initial_metric,
            s.final_metric,
            len(s.trainers),
            len(s.validators),
            book.seat_root(binding).hex(),
            book.payout_root(binding).hex(),
            book.payout_total,
            joined=frozenset(a.lower() for a in (*s.trainers, *s.validators)),
        )

    failures = chain_failures(report.head, s, chain(DEADLINE))
    assert {f.check for f in failures} == {"chain binding"}  # this run names no chain
    failures = chain_failures(report.head, s, chain(DEADLINE + 3600))
    assert {f.check for f in failures} == {"chain binding", "deadline"}


@pytest.mark.parametrize(
    "change",
    [
        {"round": 1},  # not an evaluated round
        {"round": ROUNDS},  # the last round is no early stop
        {"deadline": "soon"},
    ],
    ids=["not evaluated", "last round", "malformed"],
)
def test_a_misplaced_or_malformed_stop_fails(
    stopped: tuple[list[dict[str, Any]], dict[str, Any]], change: dict[str, Any]
) -> None:
    """The aggregator signs a stop it could not make; the rounds it trained no longer
    match either, but the stop itself is named at its record."""
    records, accounts = stopped
    records = [dict(r) for r in records]
    i = next(i for i, r in enumerate(records) if r["type"] == "DeadlineStop")
    body = {**records[i]["body"], **change}
    signature = sign_body(accounts["aggregator"], body)
    records[i] = {**records[i], "round": body["round"], "body": body, "signature": signature}
    report = _report(_rechain(records))
    at = {f.check for f in report.failures if f.record == i}
    assert at == ({"format"} if "deadline" in change else {"stopping"}), report.failures


def test_a_second_stop_fails(stopped: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    records, _ = stopped
    records = [dict(r) for r in records]
    i = next(i for i, r in enumerate(records) if r["type"] == "DeadlineStop")
    records.insert(i + 1, dict(records[i]))
    report = _report(_rechain(records))
    assert {f.check for f in report.failures if f.record == i + 1} == {"stopping"}
