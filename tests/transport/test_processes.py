"""The owners in worker processes (issue 15): the same run as in process, the same
errors, the owners' CPU counted in their workers, and no worker left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deltaml.errors import DeltaMLValueError, LedgerError, PartyTimeout, ProtocolError
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.protocol import messages as m
from deltaml.roles.aggregator import Aggregator
from deltaml.roles.training_state import PhaseClock, TrainingRecord
from deltaml.simulation import SimulationConfig, SimulationResult, simulate_shares
from deltaml.transport import (
    InMemoryTransport,
    OutOfProcessCpu,
    RecordingTransport,
    Transport,
    processes,
)
from deltaml.transport.processes import ProcessTransport, auto_workers

SRC = Path(__file__).resolve().parents[2] / "src"


# -- a whole simulation --------------------------------------------------------------
def _simulate(workers: int, transcript: Path) -> tuple[SimulationResult, RecordingTransport]:
    train, test = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, 6, seed=0)
    held: dict[str, RecordingTransport] = {}

    def wrap(inner: Transport) -> Transport:
        held["r"] = RecordingTransport(inner)
        return held["r"]

    config = SimulationConfig(
        rounds=3,
        eval_every=3,
        key_bits=512,
        allow_test_keys=True,
        chain=False,
        transcript=str(transcript),
        workers=workers,
    )
    result = simulate_shares(config, "linear", "regression", shares, test, transport_wrapper=wrap)
    return result, held["r"]


def _steps(transcript: Path) -> list[tuple[str, str, object]]:
    lines = transcript.read_text(encoding="utf-8").splitlines()
    return [(r["party"], r["type"], r["round"]) for r in map(json.loads, lines)]


def test_a_simulation_over_two_workers_is_the_in_process_one(tmp_path: Path) -> None:
    here, here_recorded = _simulate(1, tmp_path / "one.jsonl")
    there, there_recorded = _simulate(2, tmp_path / "two.jsonl")
    assert isinstance(here_recorded.inner, InMemoryTransport)
    assert isinstance(there_recorded.inner, ProcessTransport)
    assert here.verified and there.verified
    # The model is decrypted exactly: the same bits whichever process answered.
    assert np.array_equal(here.coefficients, there.coefficients)
    assert here.intercept == there.intercept
    assert here.trainers == there.trainers
    assert here.contribution_weights == there.contribution_weights
    # The published metric carries the rotations' fixed-point noise (two runs in process
    # differ by ~1e-10 relative too): equal well within that.
    np.testing.assert_allclose(
        [r.metric or 0.0 for r in here.rounds],
        [r.metric or 0.0 for r in there.rounds],
        rtol=1e-8,
    )
    # The same transcript, record for record (its hash differs: fresh randomness and
    # keys each run), and the same messages to the same parties in the same order.
    assert _steps(tmp_path / "one.jsonl") == _steps(tmp_path / "two.jsonl")

    def seen(r: RecordingTransport) -> list[tuple[str, str, str]]:
        return [(d.recipient, d.sender, d.message.kind) for d in r.deliveries]

    assert seen(here_recorded) == seen(there_recorded)
    # The owners' CPU was counted in their workers, split by phase like in process.
    for result in (here, there):
        cpu = result.record.cpu
        assert cpu["training"]["owners"] > 0 and cpu["contributions"]["central"] > 0


def test_workers_must_be_at_least_one() -> None:
    with pytest.raises(DeltaMLValueError, match="--workers must be at least 1"):
        SimulationConfig(workers=0)


def test_by_default_workers_follow_the_cores_and_the_owners() -> None:
    assert auto_workers(100, cores=1) == 1
    assert auto_workers(5, cores=2) == 1
    assert auto_workers(100, cores=2) == 2
    assert auto_workers(1000, cores=8) == 8


# -- parties that stand in for owners ----------------------------------------------
@dataclass
class Stub:
    party_id: str
    fail: Exception | None = None
    sleep: float = 0.0
    burn: float = 0.0
    answered: int = 0

    def handle(self, message: m.Message) -> m.Message:
        self.answered += 1
        if self.fail is not None:
            raise self.fail
        if isinstance(message, m.RefreshPrepare):
            time.sleep(self.sleep)
        end = time.thread_time() + self.burn
        while time.thread_time() < end:
            pass
        return m.Ack(f"{self.party_id} {self.answered} {os.getpid()}")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie has exited (its reaper is not us)


def _wait_gone(pids: list[int], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_requests_reach_the_owners_in_their_workers_in_order() -> None:
    owners = [Stub(f"owner-{i}") for i in range(5)]
    with ProcessTransport([Stub("buyer")], owners, 2) as transport:
        pids = set(transport.pids)
        assert len(pids) == 2 and os.getpid() not in pids
        ask = [(o.party_id, m.RefreshPrepare(1)) for o in owners] + [("buyer", m.Ack())]
        first = transport.request_all(ask)
        again = transport.request("owner-3", m.RefreshPrepare(2))
    notes = [r.note.split() for r in first if isinstance(r, m.Ack)]
    assert [n[0] for n in notes] == [*(o.party_id for o in owners), "buyer"]
    assert {int(n[2]) for n in notes[:5]} == pids and int(notes[5][2]) == os.getpid()
    # An owner's state lives in its worker: it counts its own answers there ...
    assert isinstance(again, m.Ack) and again.note.split()[1] == "2"
    # ... and this process's copy, frozen at the fork, never answered.
    assert all(o.answered == 0 for o in owners)
    assert _wait_gone(list(pids))


@pytest.mark.parametrize(
    "error",
    [
        ProtocolError("owner-1 answered the training of round 3 with a state for another input"),
        PartyTimeout(["owner-1"], 5),  # its __init__ does not take its message back
        LedgerError("NotAggregator", (7,)),
        ValueError("plain built-in"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_owners_error_is_the_one_it_raises_in_process(error: Exception) -> None:
    def ask(transport: Transport) -> Exception:
        with pytest.raises(Exception) as caught:
            transport.request_all([("owner-0", m.Ack()), ("owner-1", m.Ack())])
        return caught.value

    in_process = ask(InMemoryTransport([Stub("owner-0"), Stub("owner-1", fail=error)]))
    with ProcessTransport([], [Stub("owner-0"), Stub("owner-1", fail=error)], 2) as transport:
        from_worker = ask(transport)
        # The transport is still usable after a party's error.
        assert isinstance(transport.request("owner-0", m.Ack()), m.Ack)
    assert type(from_worker) is type(in_process) and str(from_worker) == str(in_process)
    assert vars(from_worker) == vars(in_process)


def test_an_error_that_cannot_cross_is_named_in_one_line() -> None:
    class LocalError(Exception):
        """Defined in a function: it does not pickle, so it cannot come back as itself."""

    owner = Stub("owner-0", fail=LocalError("bad row 7"))
    with (
        ProcessTransport([], [owner], 1) as transport,
        pytest.raises(ProtocolError, match=r"^LocalError: bad row 7$"),
    ):
        transport.request("owner-0", m.Ack())


def test_the_first_failing_request_wins_and_unknown_parties_are_refused() -> None:
    owners = [Stub("owner-0", fail=ProtocolError("first")), Stub("owner-1", fail=KeyError(2))]
    with ProcessTransport([Stub("buyer")], owners, 2) as transport:
        with pytest.raises(ProtocolError, match=r"^first$"):
            transport.request_all([("owner-0", m.Ack()), ("owner-1", m.Ack())])
        with pytest.raises(ProtocolError, match="no party 'owner-9' is connected"):
            transport.request("owner-9", m.Ack())
    with pytest.raises(ProtocolError, match="'owner-0' is already connected"):
        ProcessTransport([Stub("owner-0")], [Stub("owner-0")], 1)
    with ProcessTransport([Stub("buyer")], [], 2) as alone:
        assert alone.pids == [] and isinstance(alone.request("buyer", m.Ack()), m.Ack)
    with pytest.raises(ProtocolError, match="have been shut down"):
        alone.request("buyer", m.Ack())


def test_owners_cpu_is_counted_in_their_worker_not_as_central() -> None:
    owners = [Stub("owner-0", burn=0.3), Stub("owner-1", burn=0.3)]
    record = TrainingRecord(["owner-0", "owner-1"], [], 0)
    with ProcessTransport([Stub("buyer")], owners, 2) as transport:
        clock = PhaseClock(transport.cpu_seconds, "buyer")
        c0 = time.process_time()
        with clock.phase(record, "training"):
            transport.request_all([("owner-0", m.Ack()), ("owner-1", m.Ack())])
        here = time.process_time() - c0
        cpu = transport.cpu_seconds()
    assert isinstance(cpu, OutOfProcessCpu)
    assert cpu["owner-0"] >= 0.29 and cpu["owner-1"] >= 0.29
    assert here < 0.2  # both burned 0.3 s elsewhere, at once
    split = record.cpu["training"]
    assert split["owners"] >= 0.58 and split["central"] <= here


# -- no worker left behind ------------------------------------------------------------
def test_workers_stop_when_the_block_raises() -> None:
    owners = [Stub("owner-0"), Stub("owner-1")]
    with (
        pytest.raises(RuntimeError, match="aggregator failed"),
        ProcessTransport([], owners, 2) as transport,
    ):
        pids = transport.pids
        transport.request("owner-0", m.Ack())
        raise RuntimeError("aggregator failed")
    assert _wait_gone(pids, seconds=1.0)


def test_ctrl_c_while_owners_work_stops_every_worker_at_once() -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    owners = [Stub("owner-0", sleep=60), Stub("owner-1", sleep=60)]
    work = [("owner-0", m.RefreshPrepare(1)), ("owner-1", m.RefreshPrepare(1))]
    main = threading.get_ident()
    timer = threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT))
    try:
        with pytest.raises(KeyboardInterrupt), ProcessTransport([], owners, 2) as transport:
            pids = transport.pids
            # Ctrl-C reaches the whole process group: the workers ignore it ...
            for pid in pids:
                os.kill(pid, signal.SIGINT)
            timer.start()
            t0 = time.monotonic()
            transport.request_all(work)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    # ... and the main process terminates them, without waiting for their answers.
    assert time.monotonic() - t0 < 4  # not the 5 s a worker gets to stop when asked
    assert _wait_gone(pids, seconds=1.0)


def test_a_worker_that_dies_is_a_one_line_error_and_the_rest_stop() -> None:
    stopped = r"^the worker process holding 1 owner\(s\) stopped \(exit code -9\)$"
    with (
        pytest.raises(ProtocolError, match=stopped),
        ProcessTransport([], [Stub("owner-0"), Stub("owner-1")], 2) as transport,
    ):
        pids = transport.pids
        os.kill(pids[0], signal.SIGKILL)
        transport.request_all([("owner-0", m.Ack()), ("owner-1", m.Ack())])
    assert _wait_gone(pids, seconds=1.0)


KILLED_MAIN = """
import time
from deltaml.protocol import messages as m
from deltaml.transport.processes import ProcessTransport

class Owner:
    def __init__(self, party_id):
        self.party_id = party_id

    def handle(self, message):
        return m.Ack()

transport = ProcessTransport([], [Owner("owner-0"), Owner("owner-1")], 2)
transport.request_all([("owner-0", m.Ack()), ("owner-1", m.Ack())])
print(*transport.pids, flush=True)
time.sleep(60)
"""


def test_workers_end_when_the_main_process_is_killed(tmp_path: Path) -> None:
    """No ``close`` at all (SIGKILL): each worker sees its pipe close and exits."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    main = subprocess.Popen(
        [sys.executable, "-c", KILLED_MAIN], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert main.stdout is not None
        pids = [int(p) for p in main.stdout.readline().split()]
        assert len(pids) == 2 and not any(_gone(p) for p in pids)
    finally:
        main.kill()
        main.wait()
    assert _wait_gone(pids)


def test_a_simulation_that_fails_leaves_no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulation's own way out: the aggregator fails after the training rounds."""
    started: list[list[int]] = []

    class Watched(ProcessTransport):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            started.append(self.pids)

    def broken(*args: object) -> None:
        raise ProtocolError("the aggregator stopped")

    monkeypatch.setattr(processes, "ProcessTransport", Watched)
    monkeypatch.setattr(Aggregator, "_measure_contributions", broken)
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    config = SimulationConfig(
        rounds=1, key_bits=512, allow_test_keys=True, chain=False, verify=False, workers=2
    )
    with pytest.raises(ProtocolError, match=r"^the aggregator stopped$"):
        simulate_shares(config, "linear", "regression", split_owners(train, 4), None)
    assert len(started) == 1 and len(started[0]) == 2
    assert _wait_gone(started[0], seconds=1.0)
