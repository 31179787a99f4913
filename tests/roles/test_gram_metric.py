"""The Gram metric (``metric_protocol: gram``): the same numbers as the rotations, and
what every party receives — recorded in process and over the services' HTTP."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deltaml.crypto import EncryptedVector, PrivateKey
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.learning.gram_metric import form_mask_bits
from deltaml.protocol import form_messages as fm
from deltaml.protocol import messages as m
from deltaml.protocol.rules import form_holders
from deltaml.simulation import SimulationConfig, SimulationResult, simulate_shares
from deltaml.transport import RecordingTransport
from deltaml.transport.base import Transport
from loopback_testkit import LoopbackHttpTransport

OWNERS = 7  # 5 trainers, 2 validators
CONFIG = SimulationConfig(rounds=6, eval_every=3, key_bits=1024, allow_test_keys=True, chain=False)


def _shares() -> list:
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    return split_owners(train, OWNERS, seed=0)


@dataclasses.dataclass
class Run:
    recorder: RecordingTransport
    key: PrivateKey
    result: SimulationResult


def _run(http_dir: Path | None = None) -> Run:
    holder: dict[str, object] = {}

    def wrap(inner):  # type: ignore[no-untyped-def]
        if http_dir is not None:
            holder["http"] = LoopbackHttpTransport(inner, http_dir)
        holder["r"] = RecordingTransport(holder.get("http", inner))  # type: ignore[arg-type]
        return holder["r"]

    config = dataclasses.replace(CONFIG, metric_protocol="gram")
    try:
        result = simulate_shares(
            config, "linear", "regression", _shares(), None, transport_wrapper=wrap
        )
    finally:
        if "http" in holder:
            holder["http"].close()  # type: ignore[attr-defined]
    recorder = holder["r"]
    assert isinstance(recorder, RecordingTransport)
    buyer = recorder.inner._parties["buyer"]  # type: ignore[attr-defined]
    return Run(recorder, buyer._private_key, result)


@pytest.fixture(scope="module", params=["in-memory", "http"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    if request.param == "http":
        return _run(http_dir=tmp_path_factory.mktemp("http"))
    return _run()


def test_the_metrics_and_contributions_equal_the_rotations(run: Run) -> None:
    rotation = simulate_shares(CONFIG, "linear", "regression", _shares(), None)
    gram = run.result
    assert gram.initial_metric == pytest.approx(rotation.initial_metric, rel=1e-9)
    evaluated = [(r.round, r.metric) for r in gram.rounds if r.metric is not None]
    assert evaluated == [
        (r.round, pytest.approx(r.metric, rel=1e-9)) for r in rotation.rounds if r.metric
    ]
    assert len(evaluated) == 2
    np.testing.assert_allclose(gram.contributions, rotation.contributions, rtol=1e-7)


def test_validators_send_their_gram_once_and_only_the_named_remixer_masks(run: Run) -> None:
    validators = run.result.validators
    kinds = {oid: [d.message.kind for d in run.recorder.deliveries if d.recipient == oid]
             for oid in run.result.trainers + validators}  # fmt: skip
    for oid in run.result.trainers:
        assert not {"GramShareRequest", "FormMaskRequest", "FormCombineRequest"} & set(kinds[oid])
    for oid in validators:
        assert kinds[oid].count("GramShareRequest") == 1
        assert "EvaluateRequest" not in kinds[oid] and "ContributionRequest" not in kinds[oid]
    steps = {fm.FormMaskRequest: (0, 1), fm.FormPrepareRequest: (0,), fm.FormShareRequest: (0,),
             fm.FormCrossRequest: (1,), fm.FormCombineRequest: (1,)}  # fmt: skip
    for d in run.recorder.deliveries:
        if type(d.message) in steps:
            holders = form_holders(validators, d.message.label, CONFIG.eval_every)
            assert holders is not None and holders[0] is not None
            assert d.recipient in {holders[i] for i in steps[type(d.message)]}


def _true_vectors(run: Run) -> list[np.ndarray]:
    """What the masked vectors of a batch hide: the evaluated totals, from the round
    requests (the test holds the key)."""
    return [
        np.array(d.message.total.decrypt_ints(run.key), dtype=object)
        for d in run.recorder.deliveries
        if isinstance(d.message, m.RoundRequest)
    ]


def test_every_value_the_buyer_decrypts_is_masked_wider_than_the_model(run: Run) -> None:
    """The buyer can decrypt the first holder's vectors (``u + a¹``) and the second's
    (``u + a¹ + a²``): each value is the model's plus at least 80 bits of mask it does
    not know; nothing it receives decrypts to a model value."""
    received = run.recorder.received_by("buyer")
    requests = [msg for msg in received if isinstance(msg, fm.FormRequest)]
    assert len(requests) == 4  # rounds 0, 3 and 6, the contributions
    secrets = {int(v) for t in _true_vectors(run) for v in t if v}
    for req in requests:
        bits = form_mask_bits(req.first.vectors[0].exponent, req.scale)
        for vectors in (req.first.vectors, req.masked.vectors):
            for vector in vectors:
                values = vector.decrypt_ints(run.key)
                assert not secrets & set(values)
                # all but a few of the values carry the mask's width
                assert sum(abs(v).bit_length() >= bits - 8 for v in values) >= len(values) - 2
    kinds = {msg.kind for msg in received}
    assert "MetricRequest" not in kinds and "GramRequest" not in kinds


def test_the_buyer_receives_every_validators_signed_note_once(run: Run) -> None:
    received = run.recorder.received_by("buyer")
    (notes,) = [msg for msg in received if isinstance(msg, fm.GramNotesRequest)]
    assert list(notes.validators) == run.result.validators


def test_owners_and_the_aggregator_receive_no_plaintext_model_value(run: Run) -> None:
    secrets = {int(v) for t in _true_vectors(run) for v in t if v}

    def ints(obj: object) -> set[int]:
        out: set[int] = set()
        if isinstance(obj, EncryptedVector | str | bool | type(None)):
            return out
        if isinstance(obj, int):
            return {obj}
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                out |= ints(getattr(obj, f.name))
        elif isinstance(obj, tuple | list):
            for item in obj:
                out |= ints(item)
        return out

    for d in run.recorder.deliveries:
        if d.recipient != "buyer":
            assert not ints(d.message) & secrets, d.message.kind


class _RestartingBuyer(Transport):
    """Before each step of a batch the buyer's Gram-metric state is dropped and restored
    from its snapshot through JSON, as a buyer node that restarted would restore it."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.restarts = 0

    def request(self, party_id: str, message: m.Message) -> m.Message:
        if party_id == "buyer" and isinstance(message, fm.FormRequest | fm.FormOpenRequest):
            buyer = self.inner._parties["buyer"]  # type: ignore[attr-defined]
            saved = json.loads(json.dumps(buyer.snapshot()))
            del buyer._form_holder
            buyer.restore(saved)
            self.restarts += 1
        return self.inner.request(party_id, message)

    def request_all(self, requests: Sequence[tuple[str, m.Message]]) -> list[m.Message]:
        return [self.request(p, msg) for p, msg in requests]

    @property
    def cpu_seconds(self) -> Any:
        return self.inner.cpu_seconds


def test_a_buyer_restarted_between_the_steps_of_a_batch_goes_on(run: Run) -> None:
    holder: dict[str, _RestartingBuyer] = {}

    def wrap(inner: Transport) -> Transport:
        holder["t"] = _RestartingBuyer(inner)
        return holder["t"]

    config = dataclasses.replace(CONFIG, metric_protocol="gram")
    again = simulate_shares(config, "linear", "regression", _shares(), None, transport_wrapper=wrap)
    assert holder["t"].restarts == 8  # two steps of 3 evaluations and the contributions
    assert again.initial_metric == run.result.initial_metric
    assert [r.metric for r in again.rounds] == [r.metric for r in run.result.rounds]
    assert again.contributions == run.result.contributions
