"""What ``deltaml verify`` recomputes of the Gram metric (``metric_protocol: gram``;
evidence/checks/forms.py), and the attacks it catches:

- an aggregator that has the buyer and the remixer evaluate another vector than the
  round's model (twice its total: a better-looking model to pay for) — the batch's
  vectors are recomputed from the round's total;
- an aggregator that values other members than the trainers' round-one models;
- a buyer that publishes a metric other than its proven forms give;
- a first mask holder whose proof of added plaintexts does not hold (the buyer checks
  only the second's: the first's input is sealed, so verify checks it with the sealed
  file);
- a remixer whose proof of added plaintexts does not hold (with a buyer that did not
  check it).

Each test was run with its check removed from evidence/checks/forms.py and failed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from deltaml.evidence.transcript import read_records
from deltaml.protocol.records import FORM_KINDS, RECORD_TYPES
from deltaml.simulation import SimulationResult
from gram_testkit import run_gram


def _run(**changes: Any) -> SimulationResult:
    return run_gram(5, **changes)


def _failures(result: SimulationResult) -> list[str]:
    assert result.verification is not None
    return [f"{f.check}: {f.detail}" for f in result.verification.failures]


def test_an_honest_gram_run_verifies_with_its_numbers(tmp_path: Path) -> None:
    result = _run(transcript=str(tmp_path / "gram.jsonl"))
    assert _failures(result) == []
    report = result.verification
    assert report is not None
    assert report.metrics[0] == pytest.approx(result.initial_metric, rel=0, abs=0)
    assert list(report.contributions.values()) == result.contributions
    for check in ("decryption proof", "proof of added plaintexts", "metric", "shapley"):
        assert report.passed[check] > 0
    # every Gram-metric kind is written, and each body reads back to what was written
    assert result.transcript is not None
    kinds = set()
    for record in read_records(result.transcript):
        body = record["body"]
        if body["kind"] in FORM_KINDS:
            kinds.add(body["kind"])
            fields = {k: v for k, v in body.items() if k not in ("kind", "key")}
            assert RECORD_TYPES[body["kind"]].from_body(body).to_body() == fields
    assert kinds == FORM_KINDS


def test_evaluating_another_vector_than_the_rounds_model_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deltaml.roles import aggregator_phases

    honest = aggregator_phases.metric_vector
    monkeypatch.setattr(
        aggregator_phases, "metric_vector", lambda total, m: honest(total.mul_int(2), m)
    )
    assert any("not the evaluated model's" in f for f in _failures(_run()))


def test_valuing_other_members_than_the_round_one_models_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deltaml.roles import aggregator_phases

    honest = aggregator_phases.contribution_vectors

    def swapped(updates: Any, *args: Any) -> Any:
        return honest([updates[1], updates[0], *updates[2:]], *args)

    monkeypatch.setattr(aggregator_phases, "contribution_vectors", swapped)
    assert any("round-one models" in f for f in _failures(_run()))


def test_a_metric_other_than_the_proven_forms_give_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from deltaml.roles.form_holder import FormKeyHolder

    honest = FormKeyHolder._results

    def flattering(self: Any, label: str, values: Any, batch: Any) -> Any:
        results, base = honest(self, label, values, batch)
        return ([r * 0.9 for r in results] if label.startswith("metric") else results), base

    monkeypatch.setattr(FormKeyHolder, "_results", flattering)
    assert any(f.startswith("metric:") for f in _failures(_run()))


def test_a_first_holders_proof_that_does_not_hold_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from deltaml.crypto import quadform

    honest = quadform.add_masks_with_proof
    calls: dict[bytes, int] = {}

    def bent_first(key: Any, context: bytes, vectors: Any, share: Any) -> Any:
        out, proof = honest(key, context, vectors, share)
        calls[context] = calls.get(context, 0) + 1
        if calls[context] == 1:  # the first holder masks a batch first
            proof = dataclasses.replace(proof, z=proof.z + 1)
        return out, proof

    monkeypatch.setattr(quadform, "add_masks_with_proof", bent_first)
    failures = _failures(_run())
    assert failures and all(f.startswith("proof of added plaintexts") for f in failures)


def test_a_remixer_proof_that_does_not_hold_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from deltaml.crypto import quadform
    from deltaml.roles import form_holder

    honest = quadform.add_masks_with_proof

    def bent(key: Any, context: bytes, vectors: Any, share: Any) -> Any:
        out, proof = honest(key, context, vectors, share)
        return out, dataclasses.replace(proof, z=proof.z + 1)

    monkeypatch.setattr(quadform, "add_masks_with_proof", bent)
    monkeypatch.setattr(form_holder, "check_added_plaintexts", lambda *args: True)
    assert any(f.startswith("proof of added plaintexts") for f in _failures(_run()))
