"""The exact route survives an aggregator restart (issue 14, "nothing lost on a crash").

Each trainer answers its ``ExactRequest`` once per set-up and the buyer solves once per
request, so a restarted aggregator must go on from what it saved
(:mod:`deltaml.roles.exact_checkpoint`) without asking them again. In one process, the
aggregator "dies" as the step after each stage begins and a fresh one resumes from the
saved JSON and the transcript cut where the checkpoint says: the same model, the same
metric and contributions as a run without the crash, a transcript that verifies, and
no trainer or buyer asked twice. Through the services, an aggregator process killed
(SIGKILL, by its pid) after the buyer's solution resumes and the request finishes,
verifies and settles on chain with the optimum's model and contributions; one killed
before it fails the request in one line, the buyer refunded in full.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account

from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import ProtocolError
from deltaml.evidence.transcript import TranscriptWriter, sealed_path_for
from deltaml.evidence.verify import verify_transcript
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.protocol.messages import Message, TrainingSpec
from deltaml.roles import Aggregator, DataOwner, ModelBuyer
from deltaml.roles.aggregator import TrainingRecord, split_roles
from deltaml.roles.buyer import Seats
from deltaml.roles.exact_checkpoint import NOT_RESUMABLE, STAGES, ExactCheckpoint
from deltaml.transport import RecordingTransport, Transport
from deltaml.transport.in_memory import InMemoryTransport

OWNERS = 5
SPEC = TrainingSpec(model="linear", rounds=1, solver="exact", contributions=True)


class Crash(Exception):
    """The aggregator's process dies here."""


class _CrashOnNextRequest(Transport):
    """Passes every request on; once ``armed``, the next one "kills" the aggregator
    instead (so the step after a checkpoint has begun: its records are written, to be
    cut off when the transcript is reopened)."""

    def __init__(self, inner: Transport) -> None:
        self.inner, self.armed = inner, ""

    def request(self, party_id: str, message: Message) -> Message:
        return self.request_all([(party_id, message)])[0]

    def request_all(self, requests: Sequence[tuple[str, Message]]) -> list[Message]:
        if self.armed:
            stage, self.armed = self.armed, ""
            raise Crash(stage)
        return self.inner.request_all(requests)


@dataclass
class _Market:
    """One request's parties in this process; they keep their state across the crash."""

    buyer: ModelBuyer
    transport: RecordingTransport
    crashing: _CrashOnNextRequest
    ids: list[str]
    addresses: dict[str, str]
    account: Any
    n_features: int
    path: Path

    def aggregator(self, writer: TranscriptWriter) -> Aggregator:
        return Aggregator(
            self.crashing,
            "buyer",
            self.ids,
            account=self.account,
            addresses=self.addresses,
            transcript=writer,
        )

    def train(self, writer: TranscriptWriter, **kwargs: Any) -> TrainingRecord:
        try:
            return self.aggregator(writer).train(
                SPEC,
                self.buyer.public_key,
                self.buyer.initial_model(self.n_features + 1),
                self.n_features,
                include_target=True,
                **kwargs,
            )
        finally:
            for stream in (writer.public, writer.sealed):
                assert stream is not None
                stream.close()

    def asked(self) -> Counter[str]:
        """How many times each message kind was sent to a party."""
        return Counter(
            type(d.message).__name__ for d in self.transport.deliveries if d.sender == "aggregator"
        )


def _market(tmp_path: Path) -> _Market:
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, OWNERS, seed=0)
    ids = [f"owner-{i + 1}" for i in range(OWNERS)]
    accounts = {pid: Account.create() for pid in ["buyer", "aggregator", *ids]}
    addresses = {pid: str(a.address) for pid, a in accounts.items()}
    buyer = ModelBuyer("buyer", SPEC, 1024, allow_test_keys=True, account=accounts["buyer"])
    owners = [
        DataOwner(
            oid,
            share.X,
            share.y,
            committed_key=key_fingerprint(buyer.public_key),
            account=accounts[oid],
            allow_test_keys=True,
        )
        for oid, share in zip(ids, shares, strict=True)
    ]
    buyer.seats = Seats.of(*split_roles(ids, SPEC.trainer_fraction, SPEC.split_seed), addresses)
    transport = RecordingTransport(InMemoryTransport([buyer, *owners]))
    return _Market(
        buyer,
        transport,
        _CrashOnNextRequest(transport),
        ids,
        addresses,
        accounts["aggregator"],
        shares[0].n_features,
        tmp_path / "transcript.jsonl",
    )


def _writer(path: Path) -> TranscriptWriter:
    return TranscriptWriter(
        public=path.open("w", encoding="ascii"),
        sealed=sealed_path_for(path).open("w", encoding="ascii"),
        keep=False,
    )


def _crash_and_resume(
    market: _Market, stage: str, saved: list[str] | None = None
) -> TrainingRecord:
    """Train, "die" at the first request after ``stage`` is saved, and resume as a
    restarted service does: from the saved JSON (each kept in ``saved``), the transcript
    reopened where the checkpoint ends."""
    saved = [] if saved is None else saved

    def save(cp: Any) -> None:
        saved.append(json.dumps(cp.to_json()))
        if cp.stage == stage and len(saved) == STAGES.index(stage) + 1:
            market.crashing.armed = stage

    with pytest.raises(Crash):
        market.train(_writer(market.path), checkpoint=save)
    cp = ExactCheckpoint.from_json(json.loads(saved[-1]))
    assert cp.stage == stage and not market.crashing.armed
    # The step after it had begun: its first records (all but the parts' check, whose
    # first act is its request) are past the checkpoint, cut off by the reopening.
    written = len(market.path.read_text().splitlines())
    assert written > cp.transcript_count or stage in ("asked", "measured")
    writer = TranscriptWriter.reopen(market.path, cp.transcript_head, cp.transcript_count)
    return market.train(writer, checkpoint=save, resume=cp)


@pytest.fixture(scope="module")
def uncrashed(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingRecord, np.ndarray]:
    market = _market(tmp_path_factory.mktemp("uncrashed"))
    record = market.train(_writer(market.path))
    assert market.buyer.weights is not None
    return record, market.buyer.weights


# Stages with contributions on: every one the route saves after the buyer's solution.
@pytest.mark.parametrize("stage", STAGES[1:])
def test_an_aggregator_restarted_after_a_stage_goes_on_to_the_same_result(
    tmp_path: Path,
    stage: str,
    uncrashed: tuple[TrainingRecord, np.ndarray],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    market = _market(tmp_path)
    saved: list[str] = []
    record = _crash_and_resume(market, stage, saved)
    before, weights = uncrashed
    assert market.buyer.weights is not None
    np.testing.assert_allclose(market.buyer.weights, weights, rtol=1e-12)
    assert record.initial_metric is not None and record.initial_metric == pytest.approx(
        before.initial_metric, rel=1e-9
    )
    assert [r.round for r in record.rounds] == [1]
    assert record.rounds[0].metric == pytest.approx(before.rounds[0].metric, rel=1e-9)
    assert len(record.contributions) == len(record.trainers) >= 2
    assert record.contributions == pytest.approx(before.contributions, rel=1e-6)
    assert record.payouts is not None
    assert (
        sum(record.payouts.trainers)
        + sum(record.payouts.validators)
        + (record.payouts.aggregator + record.payouts.refund)
        == SPEC.deposit_wei
    )
    report = verify_transcript(market.path)
    assert report.ok, report.failures
    assert record.transcript_head == report.head
    assert report.passed["exact parts"] >= 1 and report.passed["completeness"] == 1
    # Nothing answered once was asked again: one request per trainer, one solve, one
    # check of the parts, one delivery.
    asked = market.asked()
    assert asked["ExactRequest"] == len(record.trainers)
    assert (asked["ExactSolveRequest"], asked["ExactCheckRequest"], asked["ExactModel"]) == (
        1,
        1,
        1,
    )
    # The aggregator's secrets in its checkpoints (D, the parts' offsets and check
    # weights) reach no log, and the buyer receives none of them but the check's
    # weights and shift, revealed after its solution (ExactCheckRequest).
    cp = json.loads(saved[-1])
    assert "matrix" in cp["mask"] and cp["mask"]["matrix"] == []  # L is not kept
    secrets = {*cp["mask"]["scale"], *(v for t in cp["secret"]["offsets"] for v in t)}
    assert len(secrets) > 10 and all(len(v) > 64 for v in secrets)
    to_buyer = " ".join(
        repr(d.message)
        for d in market.transport.deliveries
        if d.recipient == "buyer" and type(d.message).__name__ != "ExactCheckRequest"
    )
    for text in (caplog.text, to_buyer):
        assert not [v for v in secrets if v in text or str(int(v, 16)) in text]


def test_a_restart_before_the_buyers_solution_fails_the_request_in_one_line(
    tmp_path: Path,
) -> None:
    market = _market(tmp_path)
    with pytest.raises(ProtocolError) as failed:
        _crash_and_resume(market, "asked")
    assert str(failed.value) == NOT_RESUMABLE and "\n" not in NOT_RESUMABLE
    assert market.asked()["ExactSolveRequest"] == 0  # the crash came before the solve


# -- through the services: a real process killed by its pid ---------------------------------
def _query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the aggregator's database while it runs (read-only)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return list(conn.execute(sql, args))


def _stage(db: Path) -> str:
    rows = _query(db, "SELECT data FROM checkpoints")
    return str(json.loads(rows[0][0]).get("exact", "")) if rows else ""


def _wait(condition: Any, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _kill_while_waiting(faults: Any, frozen_role: str, stage: str, waits_for: str) -> None:
    """Freeze the parties of ``frozen_role`` once the trainers are about to be asked,
    wait until the aggregator has saved ``stage`` and waits for their ``waits_for``
    answer, then SIGKILL the aggregator (by its pid), thaw them and start the aggregator
    again on its port."""
    db = faults.config.work_dir / "aggregator" / "aggregator.sqlite"
    _wait(lambda: db.exists() and _stage(db) != "", "the exact route's first checkpoint")
    assert _stage(db) == "asked", "the trainers were asked before the parties froze"
    if frozen_role == "buyer":
        frozen = [p for p in faults.market.processes if p.name == "buyer"]
    else:
        seats = _query(db, "SELECT owner, role FROM offers")
        frozen = [
            faults.owners[faults.owner_addresses.index(o)] for o, r in seats if r == frozen_role
        ]
    assert frozen
    for proc in frozen:
        os.kill(proc.pid, signal.SIGSTOP)
    try:
        _wait(
            lambda: (
                _stage(db) == stage
                and _query(
                    db,
                    "SELECT 1 FROM jobs WHERE kind = ? AND status IN ('queued', 'taken')",
                    waits_for,
                )
            ),
            f"the {stage!r} checkpoint and a {waits_for} waiting",
        )
        old = faults.aggregator
        faults.say(f"killing the aggregator at its {stage!r} checkpoint (pid {old.pid})")
        faults.market.kill(old)
    finally:
        for proc in frozen:
            os.kill(proc.pid, signal.SIGCONT)
    faults.aggregator = faults.market.restart_aggregator(old)
    faults.client = faults.market.client(faults.aggregator.url)
    faults.restarts += 1


def _demo_with_a_restart(
    tmp_path: Path, anvil_url: str, monkeypatch: pytest.MonkeyPatch, *fault: str
) -> Any:
    """The demo's exact solve (1024-bit keys, contributions on, the session's anvil) with
    the aggregator killed and restarted as :func:`_kill_while_waiting` says."""
    from deltaml.services.demo import DemoConfig, run_demo
    from deltaml.services.demo import run as demo_run

    class KillWhileWaiting(demo_run._Faults):
        def on_view(self, view: dict[str, Any]) -> bool:
            if self.restarts or view["status"] != "IN_PROGRESS":
                return False
            _kill_while_waiting(self, *fault)
            return True

    monkeypatch.setattr(demo_run, "_Faults", KillWhileWaiting)
    lines: list[str] = []
    config = DemoConfig(
        work_dir=tmp_path / "demo", solver="exact", key_bits=1024, chain_url=anvil_url, timeout=600
    )
    result = run_demo(config, say=lines.append)
    assert result.restarts == 1, lines
    return result, config.work_dir / "aggregator" / "aggregator.sqlite"


@pytest.mark.slow
def test_an_aggregator_killed_after_the_buyers_solution_resumes_and_settles(
    tmp_path: Path, anvil_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The validators are idle until the exact model's metric: frozen, the restarted
    # aggregator finds the buyer's solution saved and them not yet asked.
    result, db = _demo_with_a_restart(
        tmp_path, anvil_url, monkeypatch, "validator", "solved", "EvaluateRequest"
    )
    assert (result.status, result.verified) == ("FINISHED", True), result.error
    assert set(result.statuses.values()) == {"FINISHED"}
    assert sum(result.payouts_wei.values()) + result.refund_wei == result.deposit_wei
    assert set(result.metrics) == {"1"}
    # The same model as without the crash: the exact optimum's.
    assert result.test_mse is not None and result.optimum_test_mse is not None
    assert abs(result.test_mse / result.optimum_test_mse - 1) <= 1e-6
    trainers = [o["address"] for o in result.owners if o["role"] == "trainer"]
    assert sorted(result.contributions) == sorted(trainers)
    # Resumed from the saved solution: the trainers and the buyer were asked once each;
    # the exact model's evaluation twice (the first went stale with the killed process).
    kinds = Counter(kind for (kind,) in _query(db, "SELECT kind FROM jobs"))
    assert kinds["ExactRequest"] == len(trainers)
    assert (kinds["ExactSolveRequest"], kinds["ExactCheckRequest"], kinds["ExactModel"]) == (
        1,
        1,
        1,
    )
    evaluations = Counter(
        status for (status,) in _query(db, "SELECT status FROM jobs WHERE kind = 'EvaluateRequest'")
    )
    validators = OWNERS - len(trainers)
    assert evaluations["done"] == 2 * validators  # the initial model's and the exact model's
    assert evaluations["stale"] >= 1  # killed while it waited for the exact model's


@pytest.mark.slow
def test_an_aggregator_killed_before_the_buyers_solution_fails_the_request_in_one_line(
    tmp_path: Path, anvil_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The buyer frozen while it is asked to solve: the restarted aggregator cannot know
    # whether it solved (it solves once), nor ask the trainers again.
    result, db = _demo_with_a_restart(
        tmp_path, anvil_url, monkeypatch, "buyer", "asked", "ExactSolveRequest"
    )
    assert result.status == "FAILED"
    assert result.error == NOT_RESUMABLE
    assert result.refund_wei == result.deposit_wei and not result.payouts_wei
    kinds = Counter(kind for (kind,) in _query(db, "SELECT kind FROM jobs"))
    assert (kinds["ExactSolveRequest"], kinds["ExactModel"]) == (1, 0)  # nothing asked again
