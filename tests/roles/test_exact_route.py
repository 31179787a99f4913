"""The exact solve through the roles (``solver: exact``): the optimum, a transcript that
verifies, and privacy shown by recording every message each party receives and
everything the buyer decrypts (the pattern of tests/roles/test_privacy.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deltaml.evidence.transcript import read_records
from deltaml.learning import exact_solve
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.protocol.exact_messages import ExactSolveRequest, ExactSystem
from deltaml.protocol.records import EXACT_KINDS, RECORD_TYPES, Header
from deltaml.protocol.spec import SpecError
from deltaml.roles.exact import key_holder
from deltaml.simulation import SimulationConfig, SimulationResult, simulate_shares
from deltaml.transport import RecordingTransport

OWNERS = 6  # 4 trainers, 2 validators


def run_exact(
    seed: int = 0, disclose: bool = True, transcript: str | None = None
) -> tuple[SimulationResult, dict[str, Any]]:
    config = SimulationConfig(
        transcript=transcript,
        solver="exact",
        key_bits=1024,
        allow_test_keys=True,
        chain=False,
        contributions=False,
        seed=seed,
        disclose_model=disclose,
    )
    train, test = train_test_split(load_dataset("diabetes"), 0.2, seed)
    shares = split_owners(train, OWNERS, seed=seed)
    held: dict[str, Any] = {}

    def wrap(inner: Any) -> RecordingTransport:
        held["inner"], held["recorder"] = inner, RecordingTransport(inner)
        return held["recorder"]

    result = simulate_shares(config, "linear", "regression", shares, test, transport_wrapper=wrap)
    held["buyer"] = held["inner"]._parties["buyer"]
    return result, held


def _looks_uniform(values: tuple[int, ...] | list[int], n: int) -> bool:
    """No value is a small signed integer (a fixed-point H or g entry is below 2^(p+8))."""
    return min(min(v, n - v) for v in values) > n >> 64


def test_the_route_reaches_the_optimum_and_its_transcript_verifies() -> None:
    result, _ = run_exact(seed=3)
    assert abs(result.objective_gap) <= 1e-6
    t = result.test
    assert abs(t["test_mse"] / t["optimum_test_mse"] - 1) <= 1e-6
    assert result.verification is not None and result.verification.ok, result.verification
    assert result.verification.passed["exact residual"] == 1
    assert result.verification.passed["completeness"] == 1
    # the exact model's metric as round 1, and the split it pays by (no chain here)
    assert [r.round for r in result.rounds] == [1] and result.initial_metric is not None
    assert result.payouts_wei and sum(result.payouts_wei.values()) + result.refund_wei == 10**18


def test_the_exact_models_metric_is_its_mse_on_the_validators_rows() -> None:
    """The validators evaluate ``Enc(m·w)`` (residues ``z/δ``); the buyer raises the
    remixed vector to ``δ`` and decrypts the integers packed: the published MSE is the
    model's own on the validators' rows (to the fixed-point rounding of their factor)."""
    import numpy as np

    result, held = run_exact(seed=3, disclose=False)
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 3)
    shares = split_owners(train, OWNERS, seed=3)
    ids = [f"owner-{i + 1}" for i in range(OWNERS)]
    rows = [shares[ids.index(oid)] for oid in result.validators]
    x, y = np.concatenate([s.X for s in rows]), np.concatenate([s.y for s in rows])
    mse = float(np.mean((result.trained_model().predict(x) - y) ** 2))
    assert result.rounds[-1].metric == pytest.approx(mse, rel=1e-8)
    assert key_holder(held["buyer"]).denominator > 1


def test_every_record_of_the_route_is_typed_and_reads_back(tmp_path: Path) -> None:
    """Writer and verifier share the record classes on this route too: each body the run
    wrote (the buyer's disclosure included) parses and gives back exactly its fields."""
    path = tmp_path / "exact.jsonl"
    run_exact(transcript=str(path))
    kinds = set()
    for record in read_records(path):
        body = record["body"]
        cls = {**RECORD_TYPES, "Header": Header}.get(body["kind"])
        assert cls is not None, body["kind"]
        kinds.add(body["kind"])
        fields = {k: v for k, v in body.items() if k not in ("kind", "key")}
        assert cls.from_body(body).to_body() == fields, body["kind"]
    assert EXACT_KINDS | {"ExactDisclosure"} <= kinds


def test_without_a_disclosure_the_residual_is_not_claimed() -> None:
    result, _ = run_exact(disclose=False)
    assert result.verification is not None and result.verification.ok
    assert "exact residual" not in result.verification.passed
    assert any("disclosure" in s for s in result.verification.skipped)


def test_each_party_receives_only_what_it_may() -> None:
    _, held = run_exact()
    recorder, buyer = held["recorder"], held["buyer"]
    trainers = {f"owner-{i}" for i in range(1, OWNERS + 1)} & {
        d.recipient for d in recorder.deliveries if d.message.kind == "ExactRequest"
    }
    assert len(trainers) == 4
    for delivery in recorder.deliveries:
        kind, to = delivery.message.kind, delivery.recipient
        if to == "buyer":
            assert kind in {"DecryptStats", "ExactSolveRequest", "ExactModel", "MetricRequest"}
        elif to == "aggregator":
            assert kind in {"EncryptedSums", "PublicStats", "SetupDone", "ExactReply"} | {
                "ExactSolution",
                "Ack",
                "EncryptedResiduals",
                "Remix",
                "MetricValue",
            }, kind
        elif kind == "ExactRequest":
            assert to in trainers
        elif kind in ("EvaluateRequest", "RemixRequest"):  # the validators' metric
            assert to not in trainers
        else:
            assert kind in {"StatsRequest", "Setup"}, (to, kind)
    # The buyer is never handed a trainer's unmasked Enc(H_i), Enc(g_i).
    for message in recorder.received_by("buyer"):
        assert not isinstance(message, ExactSystem)
        if isinstance(message, ExactSolveRequest):
            key = buyer.public_key
            private = buyer._private_key
            # each trainer's masked vector is uniform on its own (zero-sum shares), and
            # holds the solve part only: the check part comes with the model
            for masked in message.masked:
                assert len(masked.masked) == 11 * 11 + 11
                opened = [private.raw_decrypt(int(c)) for c in masked.masked.ciphertexts]
                assert _looks_uniform(opened, key.n)


def test_the_buyer_decrypts_only_the_masked_sum_the_model_and_the_check() -> None:
    _, held = run_exact()
    buyer = held["buyer"]
    decrypted = key_holder(buyer).solver.decrypted
    d = 11
    kinds = [kind for kind, _ in decrypted]
    assert kinds == ["masked_matrix"] * d + ["masked_vector", "final_model", "check"]
    for kind, values in decrypted:
        if kind != "final_model":
            assert _looks_uniform(values, buyer.public_key.n), kind


def test_the_recording_catches_a_missing_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: with ``L = I`` and ``D = 1`` the buyer would decrypt ``H`` and ``g``."""

    def identity(public_key: Any, d: int) -> exact_solve.Mask:
        rows = tuple(tuple(int(i == j) for j in range(d)) for i in range(d))
        return exact_solve.Mask(rows, (1,) * d)

    monkeypatch.setattr("deltaml.roles.exact_aggregator.random_mask", identity)
    _, held = run_exact(disclose=False)
    buyer = held["buyer"]
    decrypted = key_holder(buyer).solver.decrypted
    assert not any(_looks_uniform(values, buyer.public_key.n) for _, values in decrypted[:12])


def test_exact_refuses_what_has_no_meaning_by_field_name() -> None:
    with pytest.raises(SpecError) as caught:
        SimulationConfig(solver="exact", chain=False, contributions=False, target_improvement=5)
    assert caught.value.field == "target_improvement"


def test_degenerate_data_fails_the_request_in_one_line() -> None:
    """A column that repeats another makes ``H`` singular: the buyer says so, nothing is
    published (no ridge: ``l2 = 0``)."""
    import numpy as np

    from deltaml.errors import DeltaMLValueError
    from deltaml.learning.data import Dataset

    data = load_dataset("diabetes")
    x = np.column_stack([data.X, 2 * data.X[:, 0]])
    twin = Dataset(x, data.y, (*data.feature_names, "twin"), data.target_name, "regression", "t")
    config = SimulationConfig(
        solver="exact",
        key_bits=1024,
        allow_test_keys=True,
        chain=False,
        contributions=False,
        l2=0.0,
    )
    shares = split_owners(twin, 3, seed=0)
    with pytest.raises(DeltaMLValueError, match="singular"):
        simulate_shares(config, "linear", "regression", shares, None)


def test_the_route_runs_over_the_services_http(tmp_path: Any) -> None:
    """Every message of the exact route crosses real local HTTP (the services' wire format
    and queues), and the result is the same optimum."""
    from loopback_testkit import LoopbackHttpTransport

    config = SimulationConfig(
        solver="exact", key_bits=1024, allow_test_keys=True, chain=False, contributions=False
    )
    train, test = train_test_split(load_dataset("diabetes"), 0.2, 0)
    held: dict[str, Any] = {}

    def wrap(inner: Any) -> Any:
        held["http"] = LoopbackHttpTransport(inner, tmp_path)
        return held["http"]

    try:
        result = simulate_shares(
            config, "linear", "regression", split_owners(train, 4, seed=0), test, None, wrap
        )
    finally:
        if "http" in held:
            held["http"].close()
    assert abs(result.objective_gap) <= 1e-6
    assert result.verification is not None and result.verification.ok
