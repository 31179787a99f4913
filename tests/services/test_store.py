"""The store and the work queue, on SQLite and on PostgreSQL: nothing lost, nothing twice."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from deltaml.crypto import EncryptedVector, generate_keypair
from deltaml.errors import DeltaMLValueError, ProtocolError
from deltaml.protocol import messages as m
from deltaml.roles.aggregator import Checkpoint, RoundRecord, TrainingRecord
from deltaml.services.queue import JobError, PartyTimeout, QueueTransport, WorkQueue
from deltaml.services.store import Store

OWNER = "0x" + "ab" * 20


def test_documents_survive_a_reopen(db_url: str) -> None:
    store = Store(db_url)
    store.put("offers", "1", {"status": "READY", "n": [1, 2]})
    store.put("offers", "1", {"status": "INITIATED"})
    store.put("offers", "2", {"status": "WAITING"})
    store.close()
    again = Store(db_url)
    assert again.get("offers", "1") == {"status": "INITIATED"}
    assert [k for k, _ in again.items("offers")] == ["1", "2"]
    again.delete("offers", "2")
    assert again.get("offers", "2", "gone") == "gone"
    again.close()


def test_a_nonce_is_accepted_once_even_after_a_restart(db_url: str) -> None:
    store = Store(db_url)
    assert store.remember(OWNER, "n1", time.time() + 60)
    assert not store.remember(OWNER, "n1", time.time() + 60)
    store.close()
    assert not Store(db_url).remember(OWNER, "n1", time.time() + 60)


def test_a_bad_database_url_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(DeltaMLValueError, match="not a database URL"):
        Store("nonsense://")
    with pytest.raises(DeltaMLValueError, match="cannot open the database"):
        Store(f"sqlite:///{tmp_path}/missing/dir/x.sqlite")


def test_jobs_are_taken_once_and_answered_once(db_url: str) -> None:
    queue = WorkQueue(Store(db_url))
    job = queue.put(7, OWNER, m.Ack("hello"))
    taken = queue.take(OWNER, 0)
    assert taken is not None and taken.id == job and taken.request_id == 7
    assert queue.take(OWNER, 0) is None
    with pytest.raises(JobError, match="no job"):
        queue.reply(job, "0x" + "cd" * 20, "{}")
    queue.reply(job, OWNER, "reply")
    with pytest.raises(JobError, match="no longer waiting"):
        queue.reply(job, OWNER, "again")
    assert queue.wait([job], 1) == ["reply"]


def test_a_long_poll_wakes_when_work_arrives(db_url: str) -> None:
    queue = WorkQueue(Store(db_url))
    got = []
    waiter = threading.Thread(target=lambda: got.append(queue.take(OWNER, 60)), daemon=True)
    waiter.start()
    time.sleep(0.3)
    queue.put(1, OWNER, m.Ack())
    # Woken by the work, not by the end of its 60 s wait (the margin is for busy machines).
    waiter.join(30)
    assert got and got[0] is not None


def test_a_silent_party_times_out_and_its_late_reply_is_refused(db_url: str) -> None:
    queue = WorkQueue(Store(db_url))
    transport = QueueTransport(queue, 1, timeout=0.5)
    with pytest.raises(PartyTimeout, match=OWNER.lower()):
        transport.request(OWNER, m.Ack())
    job = queue.take(OWNER, 0)
    assert job is None  # the job went stale: it is no longer offered


def test_a_party_that_cannot_do_the_work_fails_the_exchange(db_url: str) -> None:
    queue = WorkQueue(Store(db_url))
    result: list[BaseException] = []

    def ask() -> None:
        try:
            QueueTransport(queue, 1, timeout=10).request(OWNER, m.Ack())
        except ProtocolError as exc:
            result.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    job = queue.take(OWNER, 5)
    assert job is not None
    queue.reply(job.id, OWNER, "its data has no column bmi", failed=True)
    thread.join(5)
    assert result and "no column bmi" in str(result[0])


def test_open_jobs_go_stale_at_a_restart(db_url: str) -> None:
    store = Store(db_url)
    queue = WorkQueue(store)
    queue.put(1, OWNER, m.Ack())
    taken = queue.put(1, OWNER, m.Ack())
    assert queue.take(OWNER, 0) is not None
    restarted = WorkQueue(Store(db_url))
    assert restarted.expire_open() == 2
    with pytest.raises(JobError, match="stale"):
        restarted.reply(taken - 1, OWNER, "late")


def test_a_checkpoint_round_trips_through_json() -> None:
    public, _ = generate_keypair(512, allow_test_keys=True)
    vec = lambda v: EncryptedVector.encrypt(public, np.array(v, dtype=float), 40)  # noqa: E731
    record = TrainingRecord(["a", "b"], ["c"], 3, [RoundRecord(1, 0.5, False, 2.5)])
    record.initial_metric = 9.0
    cp = Checkpoint(
        round=1,
        record=record,
        states={"a": vec([1.0, 2.0]), "b": vec([3.0, 4.0])},
        total=vec([4.0, 6.0]),
        first_updates={"a": vec([1.0, 2.0]), "b": vec([3.0, 4.0])},
        next_growth=20,
        rotation_openings={"metric-1": (12345, b"\x01" * 32)},
        transcript_head="ab" * 32,
        transcript_count=17,
    )
    back = Checkpoint.from_json(json.loads(json.dumps(cp.to_json())))
    assert back.round == 1 and back.next_growth == 20 and back.transcript_count == 17
    assert back.record.rounds == record.rounds and back.record.initial_metric == 9.0
    assert back.rotation_openings == cp.rotation_openings
    assert back.total.ciphertexts == cp.total.ciphertexts
    assert back.states["b"].ciphertexts == cp.states["b"].ciphertexts
    assert {t: u.ciphertexts for t, u in back.first_updates.items()} == {
        t: u.ciphertexts for t, u in cp.first_updates.items()
    }
