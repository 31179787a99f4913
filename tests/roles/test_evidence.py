"""Signatures in the protocol, and what the transcript may and may not show.

The aggregator refuses a reply that its sender did not sign; the public transcript
shows the buyer nothing it did not already receive (the ciphertexts it could decrypt
are the ones it was sent, the plaintexts the ones it decrypted); the ciphertexts that
would tell the buyer more go only into the sealed file.
"""

from __future__ import annotations

import base64
import dataclasses

import numpy as np
import pytest
from eth_account import Account

from deltaml.crypto import EncryptedVector, PlainMatrix, PrivateKey, decode_int
from deltaml.crypto.packing import PackingLayout
from deltaml.crypto.paillier import key_fingerprint
from deltaml.crypto.serialization import ciphertexts_from_bytes
from deltaml.errors import ProtocolError
from deltaml.evidence.published import rotation_commitment
from deltaml.evidence.transcript import TranscriptWriter
from deltaml.evidence.verify import verify_records
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.learning.metrics import haar_orthogonal
from deltaml.protocol import messages as m
from deltaml.roles import Aggregator, DataOwner, ModelBuyer
from deltaml.roles.aggregator import split_roles
from deltaml.roles.buyer import Seats
from deltaml.roles.evidence import sign_message
from deltaml.simulation import owner_ids
from deltaml.transport import InMemoryTransport, RecordingTransport

OWNERS = 7  # five trainers, two validators
SMALL = {"key_bits": 512, "allow_test_keys": True}


@dataclasses.dataclass
class Run:
    buyer: ModelBuyer
    owners: dict[str, DataOwner]
    aggregator: Aggregator
    recorder: RecordingTransport
    writer: TranscriptWriter
    record: object


def _shares():
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    return split_owners(train, OWNERS, seed=0)


def _owners(buyer: ModelBuyer) -> dict[str, DataOwner]:
    """The owners of a request under ``buyer``'s key."""
    key = key_fingerprint(buyer.public_key)
    return {
        oid: DataOwner(oid, s.X, s.y, committed_key=key)
        for oid, s in zip(owner_ids(OWNERS), _shares(), strict=True)
    }


def _run(spec: m.TrainingSpec, owners: dict[str, DataOwner] | None = None, **agg: object) -> Run:
    buyer = ModelBuyer("buyer", spec, **SMALL)  # type: ignore[arg-type]
    ids = owner_ids(OWNERS)
    if owners is None:
        owners = _owners(buyer)
    recorder = RecordingTransport(InMemoryTransport([buyer, *owners.values()]))
    writer = TranscriptWriter(keep=True)
    addresses = {"buyer": buyer.address, **{oid: o.address for oid, o in owners.items()}}
    seated = split_roles(ids, spec.trainer_fraction, spec.split_seed)
    buyer.seats = Seats.of(*seated, addresses)
    kwargs: dict[str, object] = {"addresses": addresses, "transcript": writer, **agg}
    aggregator = Aggregator(recorder, "buyer", ids, **kwargs)  # type: ignore[arg-type]
    d = owners[ids[0]]._x.shape[1]
    record = aggregator.train(spec, buyer.public_key, buyer.initial_model(d + 1), d, True)
    return Run(buyer, owners, aggregator, recorder, writer, record)


@pytest.fixture(scope="module")
def run() -> Run:
    return _run(m.TrainingSpec(model="linear", rounds=12, eval_every=4))


def test_the_run_is_verified_and_every_reply_was_signed(run: Run) -> None:
    assert run.record.refreshes >= 1  # type: ignore[attr-defined]
    report = verify_records(run.writer.records, run.writer.sealed_blobs)
    assert report.ok, [str(f) for f in report.failures]
    signed = {"EncryptedSums", "StateUpdate", "EncryptedResiduals", "ContributionColumns"}
    signed |= {"Remix", "RemixColumns", "PublicStats", "MetricValue", "ContributionValues"}
    for delivery in run.recorder.deliveries:
        if delivery.message.kind in signed:
            assert delivery.message.signature.startswith("0x")  # type: ignore[attr-defined]


def test_a_reply_signed_by_another_key_is_refused() -> None:
    ids = owner_ids(OWNERS)
    spec = m.TrainingSpec(model="linear", rounds=1)
    buyer = ModelBuyer("buyer", spec, **SMALL)  # type: ignore[arg-type]
    owners = _owners(buyer)
    impostor = ids[2]
    registered = {oid: o.address for oid, o in owners.items()}
    owners[impostor].account = Account.create()  # now signs with a key it did not register
    aggregator = Aggregator(
        InMemoryTransport([buyer, *owners.values()]),
        "buyer",
        ids,
        addresses={"buyer": buyer.address, **registered},
    )
    with pytest.raises(ProtocolError, match=f"EncryptedSums from {impostor}"):
        aggregator.train(spec, buyer.public_key, buyer.initial_model(11), 10, True)


def test_an_unsigned_or_altered_reply_is_refused(run: Run) -> None:
    key = run.buyer.public_key
    state = EncryptedVector.encrypt_ints(key, [1, 2], 0)
    oid = owner_ids(OWNERS)[0]
    signed = run.owners[oid]._signed(m.StateUpdate(1, state, "round", "00" * 32), key)
    aggregator = run.aggregator
    aggregator.evidence.accept(oid, signed, m.StateUpdate, sealed=True)  # fine
    with pytest.raises(ProtocolError, match="signature"):
        aggregator.evidence.accept(
            oid, dataclasses.replace(signed, round=2), m.StateUpdate, sealed=True
        )
    with pytest.raises(ProtocolError, match="signature"):
        aggregator.evidence.accept(
            oid, dataclasses.replace(signed, signature=""), m.StateUpdate, sealed=True
        )
    with pytest.raises(ProtocolError, match="signature"):  # signed by owner 0, sent as owner 1
        aggregator.evidence.accept(owner_ids(OWNERS)[1], signed, m.StateUpdate, sealed=True)


# -- what the public transcript shows -----------------------------------------------------
def _public_ciphertexts(run: Run) -> list[tuple[str, list[int]]]:
    key = run.buyer.public_key
    out = []
    for record in run.writer.records:
        for text in record["blobs"].values():
            values = ciphertexts_from_bytes(key, base64.b64decode(text))
            out.append((record["type"], [int(c) for c in values]))
    return out


def _buyer_received(run: Run) -> set[int]:
    seen: set[int] = set()
    for msg in run.recorder.received_by("buyer"):
        for f in dataclasses.fields(msg):
            value = getattr(msg, f.name)
            vectors = value if isinstance(value, tuple) else (value,)
            for v in vectors:
                if isinstance(v, EncryptedVector):
                    seen.update(int(c) for c in v.ciphertexts)
    return seen


def test_the_buyer_refuses_a_packed_decryption_outside_the_magnitude_bound(run: Run) -> None:
    """Past the bound the packed slots could carry: the buyer publishes nothing."""
    spec = m.TrainingSpec(model="linear", rounds=100, eval_every=1)
    validator = Account.create()
    seats = Seats.of(["t"], ["v"], {"t": Account.create().address, "v": validator.address})
    buyer = ModelBuyer("buyer", spec, seats=seats, **SMALL)  # type: ignore[arg-type]
    buyer.stats = run.buyer.stats
    buyer._n_features = 10  # one validator: vectors of 10 + 2 values
    rows = [0.5, -3.0, 2.0**47, *[0.0] * 8]
    fine = EncryptedVector.encrypt(buyer.public_key, np.array([*rows, 0.0]), 40)
    huge = EncryptedVector.encrypt(buyer.public_key, np.array([*rows, -(2.0**49)]), 40)

    def metric(k: int, vector: EncryptedVector) -> m.MetricRequest:
        remix = sign_message(m.Remix(k, vector), validator, buyer.public_key)
        return m.MetricRequest(k, vector, 10, "v", "", "", remix.signature)

    assert buyer.handle(metric(99, fine)).kind == "MetricValue"
    with pytest.raises(ProtocolError, match="magnitude bound"):
        buyer.handle(metric(98, huge))
    assert 98 not in buyer.metrics
    columns = sign_message(m.RemixColumns((fine, huge)), validator, buyer.public_key)
    gram = m.GramRequest(columns.columns, 99, 0, "v", (), "", columns.signature)
    with pytest.raises(ProtocolError, match="magnitude bound"):
        buyer.handle(gram)


def test_the_public_transcript_shows_the_buyer_nothing_new(run: Run) -> None:
    """Every public ciphertext was sent to the buyer, or encrypts only public zeros."""
    key: PrivateKey = run.buyer._private_key
    received = _buyer_received(run)
    public = _public_ciphertexts(run)
    kinds = {kind for kind, _ in public}
    # Two validators: the buyer decrypts the remixed vectors and columns, not the mixed ones.
    # The final model is sealed too (named by its digest): a buyer holding the public
    # transcript before settlement must not be able to decrypt the model from it.
    assert kinds == {"StatsTotal", "InitialTotal", "Remix", "RemixColumns"}
    final = [d.message for d in run.recorder.deliveries if isinstance(d.message, m.FinalModel)]
    assert len(final) == 1
    assert not {int(c) for c in final[0].total.ciphertexts} & {c for _, v in public for c in v}
    for kind, values in public:
        if all(c in received for c in values):
            continue
        assert kind == "InitialTotal", kind  # the initial model and its multiple: zeros
        assert all(key.decrypt_signed(c) == 0 for c in values)


def test_states_residuals_and_single_owners_sums_are_only_sealed(run: Run) -> None:
    public = {c for _, values in _public_ciphertexts(run) for c in values}
    private: list[int] = []
    for delivery in run.recorder.deliveries:
        msg = delivery.message
        if isinstance(msg, m.StateUpdate):
            private += msg.state.ciphertexts
        elif isinstance(msg, m.EncryptedResiduals):
            private += msg.vector.ciphertexts
        elif isinstance(msg, m.EncryptedSums):
            private += msg.sums.ciphertexts
        elif isinstance(msg, m.ContributionColumns):
            private += [c for col in msg.columns for c in col.ciphertexts]
        elif isinstance(msg, m.RoundRequest | m.EvaluateRequest):
            private += msg.total.ciphertexts
        elif isinstance(msg, m.RemixRequest):  # the aggregator's mix: only the remixer's input
            private += msg.vector.ciphertexts
        elif isinstance(msg, m.RemixColumnsRequest):
            private += [c for col in msg.columns for c in col.ciphertexts]
    assert private and not public & {int(c) for c in private}
    sealed = {
        int(c)
        for blob in run.writer.sealed_blobs.values()
        for c in ciphertexts_from_bytes(run.buyer.public_key, blob)
    }
    assert {int(c) for c in private} <= sealed


def test_no_key_or_model_value_is_in_the_transcript(run: Run) -> None:
    text = repr(run.writer.records)
    key = run.buyer._private_key
    assert format(key.p, "x") not in text and format(key.q, "x") not in text
    assert "private" not in text.lower()
    weights = run.buyer.weights
    assert weights is not None
    for record in run.writer.records:
        body = record["body"]
        floats = [
            v
            for name in ("means", "scales", "values", "gram", "value")
            if name in body
            for v in np.ravel(body[name])
        ]
        for w in weights:
            assert not any(np.isclose(w, f, rtol=1e-9, atol=0) for f in floats if abs(w) > 1e-4)


# -- who can undo the mixing ------------------------------------------------------------------
# The buyer publishes the plaintexts of what it decrypts. A party that knows every rotation
# applied after the validators' own could undo them and read each validator's own error;
# with the remix, the aggregator knows one and the remixer the other. The test holds the
# buyer's key and the sealed ciphertexts to compare with what each validator really sent.
PRECISION = 32  # TrainingSpec.precision_bits


def _real(run: Run, digest: str, exponent: int) -> np.ndarray:
    """A vector's values, decrypted by the test (public blob or sealed ciphertexts)."""
    key = run.buyer._private_key
    blob = run.writer.sealed_blobs.get(digest)
    if blob is None:
        blob = next(
            base64.b64decode(r["blobs"][digest]) for r in run.writer.records if digest in r["blobs"]
        )
    cts = ciphertexts_from_bytes(run.buyer.public_key, blob)
    return np.array([decode_int(key.decrypt_signed(c), exponent) for c in cts])


def _published(run: Run, refs: list[dict], body: dict) -> list[np.ndarray]:
    """What anyone reads from a packed decryption: each vector's values, unpacked."""
    key = run.buyer.public_key
    layout = PackingLayout.of(key, [r["length"] for r in refs], [r["exponent"] for r in refs])
    assert body["slot_bits"] == layout.slot_bits
    values = layout.unpack(key, [int(v, 16) for v in body["plaintexts"]])
    return [
        np.array([decode_int(v, r["exponent"]) for v in vector])
        for vector, r in zip(values, refs, strict=True)
    ]


def _rotation(opening: tuple[int, bytes], size: int) -> np.ndarray:
    """The fixed-point rotation a party applied, from its own opening (seed, salt)."""
    seed, _ = opening
    q = haar_orthogonal(size, np.random.default_rng(seed))
    return PlainMatrix.encode(q, PRECISION).decode()


def _records(run: Run, kind: str) -> list[dict]:
    return [r for r in run.writer.records if r["type"] == kind]


def _refs(run: Run) -> dict[str, dict]:
    """Every vector reference in a signed body, by digest."""
    out: dict[str, dict] = {}

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if {"sha256", "exponent", "length"} <= set(value):
                out[value["sha256"]] = value
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for record in run.writer.records:
        walk(record["body"])
    return out


def _metric_views(run: Run) -> dict[int, tuple[np.ndarray, list[np.ndarray]]]:
    """Per evaluated round: the published vector, and each validator's own vector."""
    refs = _refs(run)
    own: dict[int, list[np.ndarray]] = {}
    for r in _records(run, "EncryptedResiduals"):
        ref = r["body"]["vector"]
        own.setdefault(r["round"], []).append(_real(run, ref["sha256"], ref["exponent"]))
    out = {}
    for r in _records(run, "MetricValue"):
        ref = refs[r["body"]["vector"]]
        out[r["round"]] = (_published(run, [ref], r["body"])[0], own[r["round"]])
    return out


def _column_views(run: Run) -> tuple[np.ndarray, list[np.ndarray]]:
    """The published columns ``Y``, and each validator's own columns ``Y_v`` (rows × (m+1))."""
    refs = _refs(run)
    (values,) = _records(run, "ContributionValues")
    published = np.column_stack(
        _published(run, [refs[d] for d in values["body"]["columns"]], values["body"])
    )
    own = [
        np.column_stack([_real(run, c["sha256"], c["exponent"]) for c in r["body"]["columns"]])
        for r in _records(run, "ContributionColumns")
    ]
    return published, own


def _norms_match(unmixed: np.ndarray, own: list[np.ndarray]) -> bool:
    """Some block of the unmixed vector has the squared norm of a validator's own vector."""
    blocks = np.split(unmixed, len(own))
    errors = [float(v @ v) for v in own]
    return any(np.isclose(float(b @ b), e, rtol=1e-6) for b in blocks for e in errors)


def _grams_match(unmixed: np.ndarray, own: list[np.ndarray]) -> bool:
    """Some block of the unmixed columns has the Gram matrix of a validator's own columns."""
    blocks = np.split(unmixed, len(own))
    grams = [y.T @ y for y in own]
    return any(
        np.allclose(b.T @ b, g, rtol=1e-6, atol=1e-6 * float(np.abs(g).max()))
        for b in blocks
        for g in grams
    )


def _aggregator_unmixes(run: Run) -> tuple[list[bool], bool]:
    """What the aggregator computes with its own openings: does a validator's secret show?"""
    openings = run.aggregator.rotation_openings
    metrics = [
        _norms_match(_rotation(openings[f"metric-{k}"], len(y)).T @ y, own)
        for k, (y, own) in sorted(_metric_views(run).items())
    ]
    columns, own = _column_views(run)
    gram = _grams_match(_rotation(openings["contributions"], len(columns)).T @ columns, own)
    return metrics, gram


def test_the_aggregator_cannot_unmix_the_published_metric_vector(run: Run) -> None:
    """With the remix, the aggregator's own rotation undoes nothing: no validator's error shows."""
    assert len(_records(run, "Remix")) == len(_records(run, "MetricValue")) == 4
    metrics, gram = _aggregator_unmixes(run)
    assert len(metrics) == 4
    assert not any(metrics), "a single validator's error can be read by the aggregator"
    assert not gram, "a single validator's Gram block can be read by the aggregator"


def test_without_the_remix_the_aggregator_could_unmix(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above can fail: skip the remix and the same computation reads every secret."""
    monkeypatch.setattr("deltaml.roles.aggregator_phases.metric_remixer", lambda *args: None)
    monkeypatch.setattr("deltaml.roles.aggregator_phases.contribution_remixer", lambda *args: None)
    # An honest buyer refuses what no remixer signed; this one looks the other way.
    monkeypatch.setattr(ModelBuyer, "_remixer", lambda self, *args: self._seated().owners())
    monkeypatch.setattr(ModelBuyer, "_check_signed", lambda self, *args: None)
    unremixed = _run(m.TrainingSpec(model="linear", rounds=2, eval_every=2))
    assert not _records(unremixed, "Remix") and not _records(unremixed, "RemixColumns")
    metrics, gram = _aggregator_unmixes(unremixed)
    assert metrics == [True, True] and gram
    # ... and the verifier refuses such a transcript: two validators, no remix.
    report = verify_records(unremixed.writer.records, unremixed.writer.sealed_blobs)
    assert "link" in report.failed_checks()


def test_the_remixer_alone_cannot_unmix_either(run: Run) -> None:
    """The remixer undoes its own rotation exactly, and finds the aggregator's mix: no secret."""
    mixes = {r["round"]: r for r in _records(run, "Mix")}
    views = _metric_views(run)
    remixers = set()
    for remix in _records(run, "Remix"):
        k, remixer = remix["round"], remix["party"]
        remixers.add(remixer)
        opening = run.owners[remixer].rotation_openings[f"metric-{k}"]
        assert rotation_commitment(*opening) == remix["body"]["commitment"]
        y, own = views[k]
        unmixed = _rotation(opening, len(y)).T @ y  # what the remixer can compute
        # It really is undone: this is the aggregator's mixed vector (the test decrypts it) ...
        ref = mixes[k]["body"]["mixed"]
        mixed = _real(run, ref["sha256"], ref["exponent"])
        np.testing.assert_allclose(unmixed, mixed, rtol=0, atol=1e-6 * np.linalg.norm(mixed))
        assert float(unmixed @ unmixed) == pytest.approx(sum(float(v @ v) for v in own), rel=1e-6)
        # ... which is uniformly random given the total: no validator's own error shows.
        assert not _norms_match(unmixed, own), f"{remixer} reads a validator's error in round {k}"
    assert remixers == set(run.record.validators)  # type: ignore[attr-defined]

    (remix,) = _records(run, "RemixColumns")
    (mix,) = _records(run, "MixColumns")
    opening = run.owners[remix["party"]].rotation_openings["contributions"]
    assert rotation_commitment(*opening) == remix["body"]["commitment"]
    columns, own = _column_views(run)
    unmixed = _rotation(opening, len(columns)).T @ columns
    mixed = np.column_stack(
        [_real(run, c["sha256"], c["exponent"]) for c in mix["body"]["columns"]]
    )
    np.testing.assert_allclose(unmixed, mixed, rtol=0, atol=1e-6 * np.abs(mixed).max())
    assert not _grams_match(unmixed, own)


def test_the_aggregators_openings_match_its_commitments(run: Run) -> None:
    for mix in _records(run, "Mix"):
        opening = run.aggregator.rotation_openings[f"metric-{mix['round']}"]
        assert rotation_commitment(*opening) == mix["body"]["commitment"]


def test_calibrated_metric_noise_is_published_verifiably() -> None:
    """Noise changes what the buyer sees, stays unbiased on average, and still verifies."""
    from deltaml.simulation import SimulationConfig, run_simulation

    base = {"key_bits": 512, "allow_test_keys": True, "chain": False, "rounds": 6, "eval_every": 1}
    clean = run_simulation(SimulationConfig(**base))
    noisy = run_simulation(SimulationConfig(metric_noise=0.01, **base))
    assert noisy.verified is True
    clean_metrics = [r.metric for r in clean.rounds]
    noisy_metrics = [r.metric for r in noisy.rounds]
    assert clean_metrics != noisy_metrics
    # Noise of std 0.01 in standardized units is ~60 here (1 % of Var(y) ≈ 5,900), about
    # 3 % of the MSE; a difference of 60 % would be a > 5-sigma draw of the noise.
    scale = clean.rounds[-1].metric
    diffs = [abs(a - b) / scale for a, b in zip(clean_metrics, noisy_metrics, strict=True)]
    assert max(diffs) < 0.6
