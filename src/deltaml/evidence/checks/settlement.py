"""The payouts, the final record's settlement, and completeness at the end of the walk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import DeltaMLValueError
from deltaml.evidence.checks.base import (
    Skip,
    Verifier,
    _indices,
    _is_binding,
)
from deltaml.evidence.checks.exact import exact_missing
from deltaml.evidence.published import (
    is_evaluated,
)
from deltaml.evidence.report import Settlement
from deltaml.learning.contributions import contribution_weights
from deltaml.protocol import records
from deltaml.protocol.rules import (
    compute_payouts,
    scale_metric,
    spec_hash,
)


# -- settlement -------------------------------------------------------------------------
def on_payouts(vr: Verifier, body: Mapping[str, Any]) -> None:
    vr.require(not vr.payouts_seen, "completeness", "a second payout record")
    vr.payouts_seen = True
    rec = records.Payouts.from_body(body)
    rounds = vr._last_round()
    deposit = rec.deposit_wei
    vr.require(
        deposit == vr.spec.get("deposit_wei")
        and rec.final_round == rounds
        and rec.initial_round == 0
        and rec.trainers == vr.trainers
        and rec.validators == vr.validators,
        "payouts",
        "deposit, rounds or participants differ from the header",
    )
    metrics = vr.report.metrics
    vr.require(
        0 in metrics and rounds in metrics,
        "payouts",
        "the initial or final metric is missing",
    )
    vr.expect(
        rec.initial_metric == scale_metric(metrics[0])
        and rec.final_metric == scale_metric(metrics[rounds]),
        "payouts",
        "the metrics paid on are not the published ones",
    )
    phi = vr.contributions
    measured = (  # unmeasured: the trainers still in the run share alike
        dict(zip(vr.active, contribution_weights(np.array(phi)), strict=True))
        if phi is not None
        else dict.fromkeys(vr.active, 1)
    )
    weights = [measured.get(t, 0) for t in vr.trainers]  # nothing for a dropped trainer
    vr.expect(
        rec.contribution_weights == weights,
        "weights",
        "the contribution weights are not those of the published Shapley values",
    )
    payouts = compute_payouts(
        deposit,
        scale_metric(metrics[0]),
        scale_metric(metrics[rounds]),
        weights,
        len(vr.validators),
    )
    paid = (rec.trainers_wei, rec.validators_wei, rec.aggregator_wei, rec.refund_wei)
    expected = (
        list(payouts.trainers),
        list(payouts.validators),
        payouts.aggregator,
        payouts.refund,
    )
    vr.expect(paid == expected, "payouts", "the split does not recompute")
    _settlement(vr, rec, weights)
    aggregator = next(p for p, (role, _) in vr.participants.items() if role == "aggregator")
    vr.report.payouts_wei = payouts.by_party(vr.trainers, vr.validators, aggregator)
    vr.report.refund_wei = payouts.refund


def _settlement(vr: Verifier, rec: records.Payouts, weights: list[int]) -> None:
    """The final record's binding to the settlement: seats, key, chain (format 4)."""
    assert vr.key is not None
    seats = rec.seats
    vr.require(set(seats) == {"trainers", "validators"}, "format", "the final record has no seats")
    declared = {pid: address for pid, (_, address) in vr.participants.items()}
    trainers = [declared.get(t, "") for t in vr.trainers]
    validators = [declared.get(v, "") for v in vr.validators]
    vr.expect(
        [a.lower() for a in seats["trainers"]] == [a.lower() for a in trainers]
        and [a.lower() for a in seats["validators"]] == [a.lower() for a in validators],
        "final record",
        "its seats are not the addresses of the header's trainers and validators",
    )
    fingerprint = key_fingerprint(vr.key).hex()
    vr.expect(
        rec.key_fingerprint == fingerprint,
        "final record",
        "it names another Paillier key fingerprint than the header's key",
    )
    chain = rec.chain
    vr.require(chain is None or _is_binding(chain), "format", "malformed chain binding")
    requirements = chain["requirements"] if chain is not None else None
    try:
        committed = request_commitment(vr.spec, requirements)
    except DeltaMLValueError as exc:
        vr.fail("format", f"the spec cannot be hashed: {exc}")
        raise Skip from None
    role_of = {role: address for role, address in vr.participants.values()}
    vr.report.settlement = Settlement(
        buyer=role_of.get("buyer", ""),
        aggregator=role_of.get("aggregator", ""),
        key_fingerprint=fingerprint,
        spec_hash=committed.hex(),
        deposit_wei=rec.deposit_wei,
        trainers=tuple(trainers),
        validators=tuple(validators),
        initial_metric=rec.initial_metric,
        final_metric=rec.final_metric,
        contributions=tuple(weights),
        chain_id=None if chain is None else chain["chain_id"],
        contract=None if chain is None else chain["contract"],
        request_id=None if chain is None else chain["request_id"],
        deadline=None if vr.deadline_stop is None else vr.deadline_stop.deadline,
        published={k: scale_metric(v) for k, v in vr.report.metrics.items()},
    )


def check_completeness(vr: Verifier) -> None:
    """At the end of the walk: nothing the protocol requires is missing, and no round
    was trained past where the stopping rule ends training."""
    if vr.key is None:
        return
    if vr.spec.get("solver") == "exact":
        gaps = exact_missing(vr)
        if gaps:
            vr.fail("completeness", "missing " + "; ".join(gaps), whole=True)
        else:
            vr.ok("completeness")
        return
    rounds = vr._last_round()
    beyond = sorted(k for k, phase in vr.summed if phase == "round" and k > rounds)
    if beyond:
        vr.fail(
            "stopping",
            f"round(s) {_indices(beyond)} trained after the target improvement was"
            f" reached at round {rounds}",
            whole=True,
        )
    missing = _missing_training(vr, rounds) + _missing_settlement(vr, rounds)
    if missing:
        vr.fail("completeness", "missing " + "; ".join(missing[:8]), whole=True)
    else:
        vr.ok("completeness")


def _missing_training(vr: Verifier, rounds: int) -> list[str]:
    """The statistics, rounds and metrics missing from a training of ``rounds`` rounds."""
    missing = []
    every = max(1, int(vr.spec.get("eval_every", 1)))
    if set(vr.sums) != set(vr.owners):
        missing.append("an owner's statistics")
    if vr.stats is None:
        missing.append("the published statistics")
    missing += [f"round {k}" for k in range(1, rounds + 1) if (k, "round") not in vr.summed]
    evaluated = [k for k in range(rounds + 1) if is_evaluated(k, rounds, every)]
    missing += [f"the metric of round {k}" for k in evaluated if k not in vr.report.metrics]
    return missing


def _missing_settlement(vr: Verifier, rounds: int) -> list[str]:
    """The contributions, final model and payouts missing (or records after the payouts)."""
    missing = []
    if vr.spec.get("contributions") and vr.contributions is None:
        missing.append("the contributions")
    if ("final", rounds) not in vr.broadcasts:
        missing.append("the final model")
    if not vr.payouts_seen:
        missing.append("the payouts")
    elif vr.records[-1].get("type") != "Payouts":
        missing.append("nothing after the payouts")
    return missing


def request_commitment(spec: Mapping[str, Any], requirements: Mapping[str, Any] | None) -> bytes:
    """The spec hash a request commits to on chain, recomputed from a transcript.

    ``spec_hash`` of the header's spec (``deltaml simulate``), or of the spec and the
    data requirements together (the marketplace services), as
    :class:`~deltaml.evidence.transcript.ChainBinding` says.
    """
    try:
        if requirements is None:
            return spec_hash(dict(spec))
        return spec_hash({"spec": dict(spec), "requirements": dict(requirements)})
    except (TypeError, ValueError) as exc:
        raise DeltaMLValueError(str(exc)) from None
