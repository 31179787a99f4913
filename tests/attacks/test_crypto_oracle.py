"""Attack: the aggregator uses the buyer as a decryption oracle.

Issue 10, point 6: the buyer decrypted any vector the aggregator sent as a
``MetricRequest``; sent a trainer's state (which the aggregator holds, signed by the
trainer), it returned the state exactly in its proof of decryption. Now the buyer
decrypts only what the public rules allow (a metric in an evaluated round, columns
if contributions were asked for, refreshes of states a seated trainer signed as
masked) and only a seated owner's signed output: the last mixing of every metric
vector and every set of contribution columns is the remix by the validator the
public rule names, of the length the seats give. Garbage fed to that remixer shows
the buyer only a rotation of it: its norm.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from deltaml.crypto import EncryptedVector
from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import ProtocolError
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.protocol import messages as m
from deltaml.roles import Aggregator, DataOwner, ModelBuyer
from deltaml.roles.aggregator import split_roles
from deltaml.roles.buyer import Seats
from deltaml.simulation import owner_ids
from deltaml.transport import InMemoryTransport, RecordingTransport

SPEC = m.TrainingSpec(model="linear", rounds=2, eval_every=2, contributions=False)


@dataclass
class Run:
    buyer: ModelBuyer
    owners: dict[str, DataOwner]
    trainers: list[str]
    validators: list[str]
    recorder: RecordingTransport


@pytest.fixture(scope="module")
def run() -> Run:
    """An honest two-round run (evaluations at rounds 0 and 2) the attacks start from."""
    buyer = ModelBuyer("buyer", SPEC, 512, allow_test_keys=True)
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    ids = owner_ids(3)
    committed = key_fingerprint(buyer.public_key)
    owners = {
        oid: DataOwner(oid, s.X, s.y, committed_key=committed)
        for oid, s in zip(ids, split_owners(train, 3, seed=0), strict=True)
    }
    trainers, validators = split_roles(ids, SPEC.trainer_fraction, SPEC.split_seed)
    addresses = {"buyer": buyer.address, **{oid: o.address for oid, o in owners.items()}}
    buyer.seats = Seats.of(trainers, validators, addresses)
    recorder = RecordingTransport(InMemoryTransport([buyer, *owners.values()]))
    aggregator = Aggregator(recorder, "buyer", ids, addresses=addresses)
    aggregator.train(SPEC, buyer.public_key, buyer.initial_model(11), 10, True)
    return Run(buyer, owners, trainers, validators, recorder)


def _trainer_state(run: Run) -> m.StateUpdate:
    """What the aggregator holds: a trainer's signed state of the last round."""
    states = [
        d.message
        for d in run.recorder.deliveries
        if isinstance(d.message, m.StateUpdate) and d.message.round == SPEC.rounds
    ]
    return states[0]


def _plain(run: Run, vector: EncryptedVector) -> np.ndarray:
    return vector.decrypt(run.buyer._private_key)  # the test's view, not the aggregator's


def test_a_trainers_state_sent_as_a_metric_request_is_not_decrypted(run: Run) -> None:
    state = _trainer_state(run)
    padded = EncryptedVector.concat([state.state, state.state.split([10, 1])[1]])
    assert len(padded) == 12  # the length of this request's metric vector
    remixer = run.validators[0]
    attacks = [
        m.MetricRequest(SPEC.rounds, padded, 100),  # no lineage at all
        # the trainer's own signature, passed off as its remix of its state
        m.MetricRequest(
            SPEC.rounds, padded, 100, run.trainers[0], state.input_digest, "", state.signature
        ),
        # ... or as the named remixer's
        m.MetricRequest(SPEC.rounds, padded, 100, remixer, state.input_digest, "", state.signature),
    ]
    for attack in attacks:
        with pytest.raises(ProtocolError):
            run.buyer.handle(attack)


def test_a_trainers_state_is_not_refreshed_unmasked(run: Run) -> None:
    state = _trainer_state(run)
    trainer = run.trainers[0]
    for attack in (
        m.RefreshRequest(SPEC.rounds, (state.state,), SPEC.base_exponent),
        # a state signed as a StateUpdate is not one signed as masked
        m.RefreshRequest(
            SPEC.rounds, (state.state,), SPEC.base_exponent, (trainer,), (state.signature,)
        ),
    ):
        with pytest.raises(ProtocolError, match=r"signed masked state|signature"):
            run.buyer.handle(attack)


def test_only_what_the_public_rules_allow(run: Run) -> None:
    """A remix the rule names, signed, is still refused outside an evaluated round, and
    columns are refused when the request asked for no contributions."""
    state = _trainer_state(run)
    padded = EncryptedVector.concat([state.state, state.state.split([10, 1])[1]])
    remixer = run.validators[0]
    owner = run.owners[remixer]
    with pytest.raises(ProtocolError, match="no evaluation"):
        owner.handle(m.RemixRequest(1, padded))  # the remixer too refuses round 1
    with pytest.raises(ProtocolError, match="no evaluation"):
        run.buyer.handle(m.MetricRequest(1, padded, 100, remixer))
    with pytest.raises(ProtocolError, match="did not ask for contributions"):
        run.buyer.handle(m.GramRequest((padded, padded), 0, 0, remixer))


def test_garbage_through_the_remixer_shows_the_buyer_only_a_norm(run: Run) -> None:
    """The residual: an aggregator that has the remixer rotate a padded state once in an
    evaluated round gets a metric out of its norm, and nothing else of it."""
    state = _trainer_state(run)
    padded = EncryptedVector.concat([state.state, state.state.split([10, 1])[1]])
    remixer = run.validators[0]
    owner = run.owners[remixer]
    owner.rotation_openings.pop(f"metric-{SPEC.rounds}")  # as if the honest remix never came
    remix = owner.handle(m.RemixRequest(SPEC.rounds, padded))
    assert isinstance(remix, m.Remix)
    request = m.MetricRequest(
        SPEC.rounds,
        remix.vector,
        100,
        remixer,
        remix.input_digest,
        remix.commitment,
        remix.signature,
    )
    reply = run.buyer.handle(request)
    assert isinstance(reply, m.MetricValue)
    truth = _plain(run, padded)
    seen = _plain(run, remix.vector)
    assert abs(np.linalg.norm(seen) - np.linalg.norm(truth)) < 1e-6 * np.linalg.norm(truth)
    # no coordinate of the state shows through (a random rotation of 12 values)
    assert not np.any(np.isclose(seen[:, None], truth[None, :10], rtol=0, atol=1e-6))


def test_the_run_decrypted_only_signed_remixes(run: Run) -> None:
    """The control: the honest run's metric requests all carried the named remixer's
    signature, and a replay of one with another vector is refused."""
    requests = [m_ for m_ in run.recorder.received_by("buyer") if isinstance(m_, m.MetricRequest)]
    assert [r.round for r in requests] == [0, 2]
    assert all(r.remixer == run.validators[0] and r.remix_signature for r in requests)
    other = dataclasses.replace(requests[1], vector=requests[0].vector)
    with pytest.raises(ProtocolError, match="signature"):
        run.buyer.handle(other)
