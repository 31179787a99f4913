"""Privacy is shown, not claimed: record every message each role receives and check it.

The test holds the buyer's private key (no party but the buyer does) so that it can
decrypt what flowed and compare it with what each party is allowed to learn.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deltaml.crypto import EncryptedVector, PlainMatrix, PrivateKey, PublicKey
from deltaml.evidence.signatures import key_id, recover_signer
from deltaml.learning import metrics as metric_protocol
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.learning.models import model_type
from deltaml.learning.standardize import local_sums
from deltaml.protocol import messages as m
from deltaml.roles.evidence import message_body
from deltaml.simulation import SimulationConfig, owner_ids, simulate_shares
from deltaml.transport import RecordingTransport
from loopback_testkit import LoopbackHttpTransport

OWNERS = 7  # 5 trainers, 2 validators: so "one validator's error" is not the aggregate
ROUNDS = 12

OWNER_MAY_RECEIVE = {
    "StatsRequest",
    "Setup",
    "RoundRequest",
    "RefreshPrepare",
    "RefreshComplete",
    "EvaluateRequest",
    "ContributionRequest",
    # A validator the public rule names remixes the aggregator's mixed vector or columns.
    "RemixRequest",
    "RemixColumnsRequest",
}
VALIDATOR_ONLY = {"EvaluateRequest", "ContributionRequest", "RemixRequest", "RemixColumnsRequest"}
AGGREGATOR_MAY_RECEIVE = {
    "EncryptedSums",
    "PublicStats",
    "SetupDone",
    "StateUpdate",
    "MaskedState",
    "Refreshed",
    "EncryptedResiduals",
    "MetricValue",
    "ContributionColumns",
    "Remix",
    "RemixColumns",
    "ContributionValues",
    "Ack",
}
BUYER_MAY_RECEIVE = {"DecryptStats", "RefreshRequest", "MetricRequest", "GramRequest", "FinalModel"}


@dataclasses.dataclass
class Run:
    recorder: RecordingTransport
    key: PrivateKey
    shares: list
    result: object


def _run(monkeypatch: pytest.MonkeyPatch | None = None, http_dir: Path | None = None) -> Run:
    """One recorded training; with ``http_dir``, every message crosses real local HTTP."""
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, OWNERS, seed=0)
    holder: dict[str, RecordingTransport] = {}

    def wrap(inner):
        if http_dir is not None:
            holder["http"] = LoopbackHttpTransport(inner, http_dir)
        holder["r"] = RecordingTransport(holder.get("http", inner))
        return holder["r"]

    config = SimulationConfig(rounds=ROUNDS, key_bits=512, allow_test_keys=True, eval_every=1)
    try:
        result = simulate_shares(
            config, "linear", "regression", shares, None, transport_wrapper=wrap
        )
    finally:
        if "http" in holder:
            holder["http"].close()
    recorder = holder["r"]
    buyer = recorder.inner._parties["buyer"]  # the test's privileged view
    return Run(recorder, buyer._private_key, shares, result)


@pytest.fixture(scope="module", params=["in-memory", "http"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Every test below runs on both transports: in process, and over the services' HTTP."""
    if request.param == "http":
        return _run(http_dir=tmp_path_factory.mktemp("http"))
    return _run()


def _plain_numbers(obj: object) -> Iterator[float]:
    """Every number in a message that is not inside a ciphertext or a public key."""
    if isinstance(obj, EncryptedVector | PublicKey | str | type(None)):
        return
    if isinstance(obj, PrivateKey):
        raise AssertionError("a private key travelled in a message")
    if isinstance(obj, bool):
        return
    if isinstance(obj, int | float | np.floating | np.integer):
        yield float(obj)
    elif isinstance(obj, np.ndarray):
        yield from (float(v) for v in obj.ravel())
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _plain_numbers(getattr(obj, f.name))
    elif isinstance(obj, tuple | list):
        for item in obj:
            yield from _plain_numbers(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _plain_numbers(item)


def _secret_values(run: Run, viewer: str | None = None) -> np.ndarray:
    """Every intermediate model and every trainer update, decrypted by the test.

    A trainer's first update from the zero model is its own constant ``c_i``
    (computed from its own rows), so it is not secret from that trainer.
    """
    values = []
    n_trainers = len(run.result.trainers)
    for d in run.recorder.deliveries:
        msg = d.message
        if isinstance(msg, m.RoundRequest | m.EvaluateRequest):
            values.append(msg.total.decrypt(run.key) / n_trainers)
        elif isinstance(msg, m.StateUpdate) and not (d.sender == viewer and msg.round == 1):
            values.append(msg.state.decrypt(run.key))
    values.append(run.result.weights)
    flat = np.concatenate(values)
    return flat[np.abs(flat) > 1e-4]


def _matches(numbers: list[float], secrets: np.ndarray) -> list[float]:
    return [x for x in numbers if np.any(np.isclose(secrets, x, rtol=1e-9, atol=0))]


def test_refreshes_and_evaluations_happened(run: Run) -> None:
    assert run.result.refreshes >= 1
    assert len(run.result.validators) == 2
    assert sum(r.metric is not None for r in run.result.rounds) == ROUNDS
    assert len(run.result.contributions) == len(run.result.trainers)


def test_owners_receive_only_ciphertexts_and_public_values(run: Run) -> None:
    secrets = _secret_values(run)
    for oid in owner_ids(OWNERS):
        received = run.recorder.received_by(oid)
        assert received, oid
        assert {msg.kind for msg in received} <= OWNER_MAY_RECEIVE
        numbers = [x for msg in received for x in _plain_numbers(msg)]
        assert _matches(numbers, secrets) == []


def test_only_validators_are_asked_to_evaluate_or_remix(run: Run) -> None:
    for oid in run.result.trainers:
        assert not {msg.kind for msg in run.recorder.received_by(oid)} & VALIDATOR_ONLY


def test_the_remixer_receives_only_the_aggregators_mix_in_the_rounds_the_rule_names(
    run: Run,
) -> None:
    """One remix per evaluation, by the named validator, of the whole mixed vector."""
    validators = run.result.validators
    requests = [
        (d.recipient, d.message)
        for d in run.recorder.deliveries
        if isinstance(d.message, m.RemixRequest)
    ]
    assert [msg.round for _, msg in requests] == list(range(ROUNDS + 1))  # eval_every = 1
    for recipient, msg in requests:
        assert recipient == metric_protocol.metric_remixer(validators, msg.round)
        assert recipient == validators[msg.round % len(validators)]
    assert {recipient for recipient, _ in requests} == set(validators)
    # What it is given is the aggregator's mix of every validator's vector: the buyer then
    # decrypts the remix of exactly that, never the mix itself.
    mixed_sizes = {len(msg.vector) for _, msg in requests}
    assert mixed_sizes == {len(validators) * (run.shares[0].X.shape[1] + 2)}
    metric_requests = [
        msg for msg in run.recorder.received_by("buyer") if isinstance(msg, m.MetricRequest)
    ]
    sent = {tuple(msg.vector.ciphertexts) for _, msg in requests}
    assert not any(tuple(msg.vector.ciphertexts) in sent for msg in metric_requests)
    (columns,) = [
        (d.recipient, d.message)
        for d in run.recorder.deliveries
        if isinstance(d.message, m.RemixColumnsRequest)
    ]
    assert columns[0] == validators[0]
    assert len(columns[1].columns) == len(run.result.trainers) + 1


def test_aggregator_never_holds_a_plaintext_weight_update_or_residual(run: Run) -> None:
    secrets = _secret_values(run)
    received = run.recorder.received_by("aggregator")
    assert {msg.kind for msg in received} <= AGGREGATOR_MAY_RECEIVE
    numbers = [x for msg in received if msg.kind != "PublicStats" for x in _plain_numbers(msg)]
    assert _matches(numbers, secrets) == []
    # The only plaintext it gets besides statistics and counts is the published metric.
    floats = {type(msg).__name__ for msg in received for x in _plain_numbers(msg) if x != int(x)}
    assert floats <= {"PublicStats", "MetricValue", "ContributionValues"}


def test_owner_state_holds_no_model_value(run: Run) -> None:
    parties = run.recorder.inner._parties
    for oid in owner_ids(OWNERS):
        secrets = _secret_values(run, viewer=oid)
        numbers = [x for x in _plain_numbers(dict(vars(parties[oid]))) if x != 0]
        assert _matches(numbers, secrets) == []


def test_buyer_receives_only_aggregates_masked_values_and_the_result(run: Run) -> None:
    received = run.recorder.received_by("buyer")
    kinds = [msg.kind for msg in received]
    assert set(kinds) <= BUYER_MAY_RECEIVE
    assert kinds.count("FinalModel") == 1 and kinds[-1] == "FinalModel"

    # Statistics: the sum over every owner, never one owner's sums. Each owner's signed
    # sums come along (the buyer checks them against the seats), masked by zero-sum
    # shares: decrypted one by one they are nowhere near the owner's sums.
    (stats,) = [msg for msg in received if isinstance(msg, m.DecryptStats)]
    assert stats.contributors == OWNERS == len(stats.sums) == len(set(stats.owners))
    expected = sum(local_sums(s.X, s.y, True) for s in run.shares)
    np.testing.assert_allclose(stats.total.decrypt(run.key), expected, rtol=1e-9)
    for oid, sums in zip(stats.owners, stats.sums, strict=True):
        share = run.shares[owner_ids(OWNERS).index(oid)]
        own = local_sums(share.X, share.y, True)
        assert np.min(np.abs(sums.decrypt(run.key) - own)) > 2.0**100


def test_everything_the_buyer_decrypts_is_a_seats_signed_output(run: Run) -> None:
    """Lineage: the statistics are every seat's signed sums; a refresh only states the
    trainers signed as masked; a metric vector or the columns only the signed remix of
    the validator the public rule names. The buyer checked each; so does this test."""
    buyer = run.recorder.inner._parties["buyer"]
    seats = buyer.seats.owners()
    key = key_id(buyer.public_key)

    def signer(msg: m.Message) -> str:
        return str(recover_signer(message_body(msg, key), msg.signature)).lower()  # type: ignore[attr-defined]

    validators = run.result.validators
    for msg in run.recorder.received_by("buyer"):
        if isinstance(msg, m.DecryptStats):
            assert sorted(msg.owners) == sorted(seats)
            for oid, sums, sig in zip(msg.owners, msg.sums, msg.signatures, strict=True):
                assert signer(m.EncryptedSums(sums, sig)) == seats[oid].lower()
        elif isinstance(msg, m.RefreshRequest):
            assert sorted(msg.trainers) == sorted(run.result.trainers)
            for oid, vec, sig in zip(msg.trainers, msg.vectors, msg.signatures, strict=True):
                assert signer(m.MaskedState(msg.round, vec, sig)) == seats[oid].lower()
        elif isinstance(msg, m.MetricRequest):
            assert msg.remixer == metric_protocol.metric_remixer(validators, msg.round)
            remix = m.Remix(
                msg.round, msg.vector, msg.remix_input, msg.remix_commitment, msg.remix_signature
            )
            assert signer(remix) == seats[msg.remixer].lower()
        elif isinstance(msg, m.GramRequest):
            assert msg.remixer == validators[0]
            remix_columns = m.RemixColumns(
                msg.columns, msg.remix_inputs, msg.remix_commitment, msg.remix_signature
            )
            assert signer(remix_columns) == seats[msg.remixer].lower()


def test_buyer_sees_refreshed_states_only_masked(run: Run) -> None:
    secrets = _secret_values(run)
    requests = [
        msg for msg in run.recorder.received_by("buyer") if isinstance(msg, m.RefreshRequest)
    ]
    assert requests
    for req in requests:
        assert len(req.vectors) == len(run.result.trainers)
        for vec in req.vectors:
            seen = vec.decrypt(run.key)
            # The buyer's view is off from every true value by far more than the value's size.
            assert np.all(np.abs(seen) > 2.0**60)
            assert _matches(list(seen), secrets) == []


def _validator_sse(run: Run, weights: np.ndarray) -> list[float]:
    parties = run.recorder.inner._parties
    model = model_type("linear")
    out = []
    for vid in run.result.validators:
        owner = parties[vid]
        r = owner._stats.design(owner._x) @ weights - model.residual_target(owner._y, owner._stats)
        out.append(float(r @ r))
    return out


def _metric_blocks(run: Run) -> list[tuple[np.ndarray, list[float]]]:
    """For every evaluation: the buyer's decrypted vector, and each validator's true SSE."""
    deliveries = run.recorder.deliveries
    n_trainers = len(run.result.trainers)
    out = []
    totals = {
        d.message.round: d.message.total
        for d in deliveries
        if isinstance(d.message, m.EvaluateRequest)
    }
    for d in deliveries:
        if d.recipient == "buyer" and isinstance(d.message, m.MetricRequest):
            weights = totals[d.message.round].decrypt(run.key) / n_trainers
            out.append((d.message.vector.decrypt(run.key), _validator_sse(run, weights)))
    return out


def test_buyer_learns_only_the_total_validation_error(run: Run) -> None:
    blocks = _metric_blocks(run)
    assert len(blocks) == ROUNDS + 1  # the initial model is evaluated too
    k = len(blocks[0][0]) // 2
    for vector, sse in blocks:
        assert len(vector) == 2 * k  # (features + 2) per validator, never per sample
        assert float(vector @ vector) == pytest.approx(sum(sse), rel=1e-6)
        for block in (vector[:k], vector[k:]):
            norm = float(block @ block)
            assert not any(np.isclose(norm, s, rtol=1e-6) for s in sse), (
                "a single validator's error is visible"
            )


def test_without_the_mixing_a_single_error_would_show(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check above can fail: without both rotations one validator's SSE shows."""

    def no_mixing(vectors, precision_bits, rng):
        return EncryptedVector.concat(vectors).rerandomize()

    def no_remix(vector, precision_bits, rng):  # the identity, at the expected precision
        identity = PlainMatrix.encode(np.eye(len(vector)), precision_bits)
        return vector.matvec(identity).rerandomize()

    monkeypatch.setattr(metric_protocol, "mix_residual_vectors", no_mixing)
    monkeypatch.setattr("deltaml.roles.aggregator_phases.mix_residual_vectors", no_mixing)
    monkeypatch.setattr("deltaml.roles.data_owner.remix_vector", no_remix)
    run = _run()
    vector, sse = _metric_blocks(run)[-1]
    k = len(vector) // 2
    norms = [float(vector[:k] @ vector[:k]), float(vector[k:] @ vector[k:])]
    assert any(np.isclose(n, s, rtol=1e-6) for n in norms for s in sse)


def test_buyer_never_receives_a_coalition_model(run: Run) -> None:
    """The contribution columns are rotated residuals, never a model the buyer could decrypt."""
    (gram_request,) = [
        msg for msg in run.recorder.received_by("buyer") if isinstance(msg, m.GramRequest)
    ]
    n_trainers = len(run.result.trainers)
    first = [
        d.message.state.decrypt(run.key)
        for d in run.recorder.deliveries
        if isinstance(d.message, m.StateUpdate) and d.message.round == 1
    ][:n_trainers]
    relaxation = 1.6
    models = []
    for size in range(1, n_trainers + 1):
        for subset in itertools.combinations(range(n_trainers), size):
            models.append(np.mean([first[i] for i in subset], axis=0) / relaxation)
    secrets = np.concatenate([*models, _secret_values(run)])
    secrets = secrets[np.abs(secrets) > 1e-4]
    k = len(gram_request.columns[0]) // 2
    assert len(gram_request.columns) == n_trainers + 1
    for column in gram_request.columns:
        seen = column.decrypt(run.key)
        assert len(seen) == 2 * k
        assert _matches(list(seen), secrets) == []
