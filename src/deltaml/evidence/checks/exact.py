"""``deltaml verify``'s checks of the exact solve's records (``solver: exact``).

What anyone can check from the transcript and its sealed ciphertexts:

- each seated trainer signed one ``ExactSystem`` (``Enc(H_i)``, ``Enc(g_i)``), one
  ``ExactMasked`` solve part and one ``ExactCheck`` check part, once (``exact``);
- ``ExactSums``: the summed system and the summed masked vector are the products of
  exactly those ciphertexts, in seat order (``link``, ``sum``);
- the buyer's ``ExactSolution`` names that masked sum, and the aggregator's
  ``ExactModel`` names that solution (``link``).

The masking secret ``L, D`` is the aggregator's and is checked by its effect: the model
``w`` must solve the summed system, ``H·w = g`` over ℤₙ. That needs ``w``, which is the
buyer's; the buyer publishes it only when it chooses to (to dispute a result, say), in
an ``ExactDisclosure``: ``w`` and ``u`` with proofs that ``Enc(w)`` and ``Enc(u)``
decrypt to them, and proofs of what the two residuals decrypt to — the model's
``Enc(H)·w − Enc(g)`` and the solve's ``Enc(LHD)·u − Enc(Lg)``, both computed by
the verifier itself from the sealed sums (``exact residual``). Both zero: the model is
the exact optimum of the trainers' quantized system. A non-zero solve residual: the
buyer returned a wrong ``Enc(u)``. A zero solve residual and a non-zero model residual:
the unmasking (or a trainer's masked vector) does not match the system — the
aggregator's (or that trainer's) fault, never an honest buyer's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deltaml.crypto.paillier import PublicKey, check_decryption
from deltaml.evidence.checks.exact_parts import (
    check_extra,
    check_parts,
    check_solve_check,
    note_digest,
    parts_missing,
)
from deltaml.evidence.checks.exact_state import exact_state
from deltaml.evidence.checks.proofs import check_sum
from deltaml.evidence.signatures import parse_hex_ints
from deltaml.learning.exact_parts import model_columns
from deltaml.learning.exact_solve import EncryptedSystem, residual, split_masked
from deltaml.protocol import records
from deltaml.protocol.rules import EXACT_ROUND


def _party_once(v: Any, what: str) -> str:
    party = v.records[v.seq]["party"]
    seen = exact_state(v)[what]
    v.require(party in v.trainers, "exact", f"{party} is not a seated trainer")
    v.require(party not in seen, "exact", f"{party} sent its {what} twice")
    return str(party)


def check_system(v: Any, body: Mapping[str, Any]) -> None:
    rec = records.ExactSystem.from_body(body)
    party = _party_once(v, "systems")
    exact_state(v)["systems"][party] = v.declare(rec.system)


def check_masked(v: Any, body: Mapping[str, Any]) -> None:
    rec = records.ExactMasked.from_body(body)
    party = _party_once(v, "masked")
    exact_state(v)["masked"][party] = v.declare(rec.masked)
    note_digest(v, party, rec)


def check_part(v: Any, body: Mapping[str, Any]) -> None:
    rec = records.ExactCheck.from_body(body)
    party = _party_once(v, "checks")
    exact_state(v)["checks"][party] = v.declare(rec.check)


def check_sums(v: Any, body: Mapping[str, Any]) -> None:
    rec = records.ExactSums.from_body(body)
    state = exact_state(v)
    systems, masked, checks = (
        [state[what].get(t) for t in v.trainers] for what in ("systems", "masked", "checks")
    )
    v.require(
        rec.systems == systems and rec.masked == masked and rec.checks == checks,
        "link",
        "the exact sums are not over every seated trainer's signed messages, once each",
    )
    v.ok("link")
    p = rec.precision_bits
    v.require(1 <= p <= 64, "format", "malformed precision_bits")
    check_extra(v, rec)
    state["sums"] = {
        "system": v.declare(rec.system_total),
        "masked": v.declare(rec.masked_total),
        "precision_bits": p,
    }
    check_sum(v, state["sums"]["system"], systems)
    check_sum(v, state["sums"]["masked"], masked)


def check_solution(v: Any, body: Mapping[str, Any]) -> None:
    rec = records.ExactSolution.from_body(body)
    sums = exact_state(v)["sums"]
    v.require(sums is not None, "link", "a solution before the exact sums")
    v.require(rec.masked_sum == sums["masked"], "link", "the buyer solved another masked system")
    v.ok("link")
    exact_state(v)["solution"] = v.declare(rec.solution)


def check_model(v: Any, body: Mapping[str, Any]) -> None:
    rec = records.ExactModel.from_body(body)
    solution = exact_state(v)["solution"]
    v.require(
        solution is not None and rec.solution == solution,
        "link",
        "the exact model is not unmasked from the buyer's solution",
    )
    v.ok("link")
    exact_state(v)["model"] = v.declare(rec.model)


def _proven(
    v: Any, key: PublicKey, ciphertexts: Sequence[int], rec: records.ExactDisclosure, name: str
) -> list[int]:
    bits = key.n.bit_length()
    values = parse_hex_ints(getattr(rec, name), name, bits)
    randomness = parse_hex_ints(getattr(rec, name + "_randomness"), name, bits)
    v.require(len(values) == len(randomness) == len(ciphertexts), "format", f"{name}: wrong length")
    bad = [
        i
        for i, (c, m, r) in enumerate(zip(ciphertexts, values, randomness, strict=True))
        if not check_decryption(key, c, m, r)
    ]
    v.require(not bad, "decryption proof", f"{name}: element(s) {bad[:8]} are not proven")
    v.ok("decryption proof", len(values))
    return values


def check_disclosure(v: Any, body: Mapping[str, Any]) -> None:
    rec = records.ExactDisclosure.from_body(body)
    state, key = exact_state(v), v.key
    state["disclosed"] = True
    sums, model = state["sums"], state.get("model")
    v.require(sums is not None and model is not None, "link", "a disclosure before the model")
    system_cts = v.vector(sums["system"], sealed=True)
    masked_cts = v.vector(sums["masked"], sealed=True)
    w_cts, u_cts = v.vector(model, sealed=True), v.vector(state["solution"], sealed=True)
    if system_cts is None or masked_cts is None or w_cts is None or u_cts is None:
        v.report.skipped.append("the exact model's residual (no sealed ciphertexts)")
        return
    k = max(1, int(v.spec.get("n_classes") or 0))  # one model per class
    extra, d = state.get("extra", 0), len(w_cts) // k
    v.require(
        len(w_cts) == d * k
        and len(system_cts) == d * d + d * k
        and len(masked_cts) == d * d + d * (k + extra)
        and len(u_cts) == d * (k + extra),
        "format",
        "the exact sums do not fit the model",
    )
    u_cts = model_columns(u_cts, k, extra)
    p = sums["precision_bits"]
    system = EncryptedSystem(
        tuple(tuple(system_cts[i * d : (i + 1) * d]) for i in range(d)),
        tuple(system_cts[d * d :]),
        p,
    )
    solve, _ = split_masked(masked_cts, d, k, extra)
    masked_system = EncryptedSystem(solve.matrix, model_columns(solve.vector, k, extra), p)
    w = _proven(v, key, w_cts, rec, "model")
    u = _proven(v, key, u_cts, rec, "solution")
    solve_residual = _proven(v, key, residual(masked_system, u, key), rec, "solve_residual")
    model_residual = _proven(v, key, residual(system, w, key), rec, "model_residual")
    v.require(
        not any(solve_residual),
        "exact residual",
        "the buyer's solution does not solve the masked system (a wrong Enc(u))",
    )
    v.expect(
        not any(model_residual),
        "exact residual",
        "the model does not solve the trainers' system (a wrong unmasking or masked vector)",
    )


def check_total(v: Any, body: Mapping[str, Any]) -> None:
    """The exact model times the number of trainers, evaluated as round
    :data:`EXACT_ROUND` (its metric and the payouts then follow as in a run of one round)."""
    rec = records.ExactTotal.from_body(body)
    model = exact_state(v).get("model")
    v.require(
        model is not None and rec.model == model and rec.multiplier == len(v.trainers),
        "link",
        "the evaluated total is not the exact model times the number of trainers",
    )
    v.ok("link")
    total = v.declare(rec.total)
    w, t = v.vector(model, sealed=True), v.vector(total, sealed=True)
    if w is not None and t is not None:
        n2 = v.key.nsquare
        v.expect(
            [pow(c, rec.multiplier, n2) for c in w] == list(t),
            "link",
            "the evaluated total does not encrypt the exact model times the trainers",
        )
    v.current_total = total
    v.summed.add((EXACT_ROUND, "round"))


EXACT_CHECKS = {
    "ExactSystem": check_system,
    "ExactMasked": check_masked,
    "ExactCheck": check_part,
    "ExactSums": check_sums,
    "ExactSolution": check_solution,
    "ExactModel": check_model,
    "ExactTotal": check_total,
    "ExactDisclosure": check_disclosure,
    "ExactSolveCheck": check_solve_check,
    "ExactParts": check_parts,
}


def exact_missing(v: Any) -> list[str]:
    """What an exact-solve transcript lacks (the verifier's completeness check)."""
    state = exact_state(v)
    missing = []
    if set(v.sums) != set(v.owners):
        missing.append("an owner's statistics")
    if v.stats is None:
        missing.append("the published statistics")
    for what in ("systems", "masked", "checks"):
        if set(state[what]) != set(v.trainers):
            missing.append(f"a trainer's exact {what}")
    if state["sums"] is None:
        missing.append("the exact sums")
    if state["solution"] is None:
        missing.append("the buyer's solution")
    if state.get("model") is None:
        missing.append("the exact model")
    missing += parts_missing(v)
    if not v.spec.get("n_classes"):  # the metrics and the split, as a run of one round
        missing += [
            f"the metric of round {k}" for k in (0, EXACT_ROUND) if k not in v.report.metrics
        ]
        if not v.payouts_seen:
            missing.append("the payouts")
    if not state.get("disclosed"):
        v.report.skipped.append(
            "the exact model's residual H·w = g: it needs the buyer's disclosure of w"
        )
    return missing
