"""``deltaml verify``'s checks of each trainer's part of the exact model (``solver:
exact`` with ``contributions``; the construction: :mod:`deltaml.learning.exact_parts`).

- ``ExactSums`` names as many extra columns as the request's contributions give (one
  per trainer and the check), and every trainer signed a digest of the unmasking values
  with its masked part (``format``, ``link``);
- ``ExactSolveCheck``: the check column of the buyer's solution holds — the verifier
  recomputes ``Enc(x_c − λ₀x₀ − Σλ_i x_i − τ)`` from the sealed solution and checks the
  buyer's proof that it encrypts 0 (``exact check``): a buyer that answered any column
  wrongly is caught here;
- ``ExactParts``: the ``D`` and offsets kept sealed are the ones every trainer signed,
  and every part is their unmasking of the solution (``exact parts``): an aggregator
  that moved value between two trainers' parts is caught here. The contributions
  request must then be over exactly these parts (checks/contributions.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deltaml.crypto.paillier import check_decryption
from deltaml.evidence.checks.exact_state import exact_state as _state
from deltaml.evidence.signatures import parse_hex_ints
from deltaml.learning.exact_parts import check_vector, extra_columns, mask_digest, unmask_parts
from deltaml.protocol import records


def expected_extra(v: Any) -> int:
    """The parts' columns the request's spec gives: one per trainer and the check."""
    return extra_columns(len(v.trainers)) if v.spec.get("contributions") else 0


def check_extra(v: Any, rec: records.ExactSums) -> None:
    extra = expected_extra(v)
    v.require(
        rec.extra_columns == extra,
        "format",
        f"the masked system has {rec.extra_columns} extra columns, the request gives {extra}",
    )
    state = _state(v)
    state["extra"] = extra
    signed = {t: state.get("digests", {}).get(t, "") for t in v.trainers}
    v.require(
        all(bool(d) == bool(extra) for d in signed.values()),
        "link",
        "a trainer's masked part does not sign the unmasking values"
        if extra
        else "a mask digest in a request without contributions",
    )


def note_digest(v: Any, party: str, rec: records.ExactMasked) -> None:
    _state(v).setdefault("digests", {})[party] = rec.mask_digest


def check_solve_check(v: Any, body: Mapping[str, Any]) -> None:
    rec = records.ExactSolveCheck.from_body(body)
    state, key = _state(v), v.key
    solution = state["solution"]
    v.require(
        solution is not None and rec.solution == solution and state.get("extra"),
        "link",
        "the check is not of the buyer's solution of a solve with parts",
    )
    v.ok("link")
    bits = key.n.bit_length()
    weights = parse_hex_ints(rec.weights, "weights", bits)
    shift = parse_hex_ints(rec.shift, "shift", bits)
    randomness = parse_hex_ints(rec.randomness, "randomness", bits)
    v.require(
        len(weights) == state["extra"] and len(shift) == len(randomness),
        "format",
        "the check's weights, shift or proofs do not fit the solve",
    )
    state["checked"] = True
    cts = v.vector(solution, sealed=True)
    if cts is None:
        v.report.skipped.append("the exact solve's check column (no sealed ciphertexts)")
        return
    combined = check_vector(cts, weights, shift, key)
    v.require(len(combined) == len(randomness), "format", "one proof per weight")
    bad = [
        j
        for j, (c, r) in enumerate(zip(combined, randomness, strict=True))
        if not check_decryption(key, c, 0, r)
    ]
    v.require(
        not bad,
        "exact check",
        f"the buyer's solution fails its check column at {bad[:8]} (a wrong column)",
    )
    v.ok("exact check", len(randomness))


def check_parts(v: Any, body: Mapping[str, Any]) -> None:
    rec = records.ExactParts.from_body(body)
    state, key = _state(v), v.key
    m = len(v.trainers)
    v.require(
        state.get("checked") and rec.solution == state["solution"] and rec.multiplier == m,
        "link",
        "the parts are not unmasked from the checked solution, times the trainers",
    )
    v.ok("link")
    kept = v.declare(rec.secrets)
    parts = [v.declare(ref) for ref in rec.parts]
    v.require(len(parts) == m, "format", "one part per trainer")
    state["parts"] = parts
    values = v.vector(kept, sealed=True)
    solution = v.vector(state["solution"], sealed=True)
    if values is None or solution is None:
        v.report.skipped.append("the exact parts' unmasking (no sealed ciphertexts)")
        return
    d = len(values) // (m + 1)
    v.require(len(values) == d * (m + 1), "format", "the unmasking values do not fit")
    scale = values[:d]
    offsets = [values[d * (i + 1) : d * (i + 2)] for i in range(m)]
    digest = mask_digest(scale, offsets)
    v.require(
        all(state["digests"].get(t) == digest for t in v.trainers),
        "exact parts",
        "the unmasking values are not the ones every trainer signed",
    )
    recomputed = unmask_parts(solution, offsets, scale, m, key)
    given = [v.vector(p, sealed=True) for p in parts]
    v.expect(
        [list(p) for p in recomputed] == [list(g or []) for g in given],
        "exact parts",
        "a trainer's part is not the unmasking of the buyer's solution",
    )


def parts_missing(v: Any) -> list[str]:
    state = _state(v)
    if not expected_extra(v):
        return []
    return [
        what
        for what, seen in (
            ("the exact solve's check", state.get("checked")),
            ("the trainers' parts", state.get("parts")),
        )
        if not seen
    ]
