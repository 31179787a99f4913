"""The rounds: initial total, broadcasts (re-randomized), states, sums, drops, a deadline stop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gmpy2

from deltaml.evidence.checks.base import (
    Verifier,
)
from deltaml.evidence.checks.proofs import check_rerandomization, check_sum
from deltaml.evidence.published import (
    is_evaluated,
)
from deltaml.evidence.signatures import (
    parse_hex_ints,
)
from deltaml.protocol import records


# -- rounds -----------------------------------------------------------------------------
def on_initial_total(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.InitialTotal.from_body(body)
    assert vr.key is not None
    model = vr.declare(rec.model)
    total = vr.declare(rec.total)
    multiplier = rec.multiplier
    vr.require(
        multiplier == len(vr.trainers) and vr.current_total is None,
        "link",
        "the initial total is not the initial model times the number of trainers",
    )
    vr.current_total, vr.initial_model = total, model
    a, b = vr.vector(model, sealed=False), vr.vector(total, sealed=False)
    assert a is not None and b is not None
    n2 = vr.key.nsquare
    vr.expect(
        len(a) == len(b)
        and vr.exponent(model) == vr.exponent(total)
        and all(int(gmpy2.powmod(x, multiplier, n2)) == y for x, y in zip(a, b, strict=False)),
        "sum",
        "the initial total is not the initial model times the number of trainers",
    )


def on_broadcast(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.Broadcast.from_body(body)
    assert vr.key is not None
    k, purpose = rec.round, rec.purpose
    vr.require(
        purpose in ("round", "evaluate", "final") and type(k) is int,
        "format",
        "unknown broadcast",
    )
    vr.require(
        rec.source == vr.current_total,
        "link",
        f"the {purpose} broadcast of round {k} is not of the current total",
    )
    if purpose == "round":
        vr.require(
            k == vr._rounds_done() + 1,
            "link",
            f"round {k} follows round {vr._rounds_done()}",
        )
    else:
        vr.require(k == vr._rounds_done(), "link", f"{purpose} of round {k} out of order")
    vr.ok("link")
    outgoing = vr.declare(rec.outgoing)
    vr.require((purpose, k) not in vr.broadcasts, "completeness", "a second broadcast")
    vr.broadcasts[(purpose, k)] = outgoing
    exponents = parse_hex_ints(rec.exponents, "exponents", 2 * vr.key.key_bits)
    check_rerandomization(vr, [rec.source], [outgoing], [exponents])


def on_dropped(vr: Verifier, body: Mapping[str, Any]) -> None:
    """Trainers that did not answer leave; round ``k`` starts again from a refresh."""
    rec = records.Dropped.from_body(body)
    k, dropped, remaining = rec.round, rec.dropped, rec.remaining
    minimum = max(1, int(vr.spec.get("min_trainers", 1)))
    vr.require(
        type(k) is int
        and k == vr._rounds_done() + 1
        and isinstance(dropped, list)
        and len(dropped) > 0
        and set(dropped) <= set(vr.active)
        and remaining == [t for t in vr.active if t not in dropped]
        and len(remaining) >= minimum,
        "link",
        f"round {k} drops trainers that are not in it, or too many",
    )
    vr.ok("link")
    vr.active = list(remaining)
    # What round k had done is void: the remaining trainers refresh and answer again.
    vr.broadcasts.pop(("round", k), None)
    vr.states.pop((k, "refresh"), None)
    vr.states.pop((k, "round"), None)
    vr.summed.discard((k, "refresh"))
    vr.current_total = None  # the next broadcast must follow a new (refresh) sum


def on_deadline_stop(vr: Verifier, body: Mapping[str, Any]) -> None:
    """The aggregator stopped after round ``k`` so as to finish before the deadline.

    Allowed once, right after an evaluated round ``k`` before the last (its metric
    published), before the contributions and the final model; the run then ends as
    if the spec had ``k`` rounds. Its ``deadline`` must be the request's on chain
    (:func:`verify_against_chain`); when it stopped is the aggregator's word.
    """
    stop = records.DeadlineStop.from_body(body)
    k, every, rounds = stop.round, vr.spec.get("eval_every"), vr.spec.get("rounds")
    vr.require(type(every) is int and type(rounds) is int, "format", "malformed spec")
    assert isinstance(every, int) and isinstance(rounds, int)
    vr.require(
        vr.deadline_stop is None
        and 0 < k < rounds
        and k == vr._rounds_done()
        and is_evaluated(k, rounds, every)
        and k in vr.report.metrics
        and vr.request is None
        and not any(purpose == "final" for purpose, _ in vr.broadcasts),
        "stopping",
        f"a deadline stop after round {k} is not right after an evaluated round"
        " before the last, once, before the contributions and the final model",
    )
    vr.ok("stopping")
    vr.deadline_stop = stop


def on_state_update(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.StateUpdate.from_body(body)
    k, phase = rec.round, rec.phase
    party = vr.records[vr.seq]["party"]
    vr.require(phase in ("round", "refresh"), "format", "unknown state phase")
    if phase == "round":
        vr.require(
            rec.input == vr.broadcasts.get(("round", k)),
            "link",
            f"{party}'s state does not answer round {k}'s total",
        )
        vr.ok("link")
    states = vr.states.setdefault((k, phase), {})
    vr.require(party not in states, "completeness", f"{party} sent two states")
    states[party] = vr.declare(rec.state)


def on_sum(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.Sum.from_body(body)
    k, phase = rec.round, rec.phase
    states = vr.states.get((k, phase), {})
    inputs = rec.inputs
    vr.require(
        inputs == [states.get(t) for t in vr.active] and (k, phase) not in vr.summed,
        "link",
        f"the {phase} sum of round {k} is not over every trainer's signed state, once each",
    )
    vr.ok("link")
    total = vr.declare(rec.total)
    vr.summed.add((k, phase))
    vr.current_total = total
    check_sum(vr, total, inputs)
