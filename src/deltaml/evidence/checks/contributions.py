"""The contributions: the request, the columns, their mix and remix, the Shapley values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from deltaml.evidence.checks.base import (
    Verifier,
    _is_hex,
    _is_number,
)
from deltaml.evidence.checks.exact_state import exact_state
from deltaml.evidence.checks.proofs import (
    check_rerandomization,
    proven_packed,
    proven_packed_ciphertexts,
)
from deltaml.evidence.published import (
    denominator_exponent,
    gram_from_ints,
    shapley_method,
    shapley_seed,
    shapley_values,
)
from deltaml.evidence.signatures import (
    parse_hex_ints,
)
from deltaml.protocol import records
from deltaml.protocol.rules import (
    contribution_remixer,
)

SHAPLEY_RTOL = 1e-9


# -- contributions ----------------------------------------------------------------------
def on_contribution_request(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.ContributionRequest.from_body(body)
    vr.require(
        vr.spec.get("metric_protocol", "rotation") == "rotation",
        "format",
        "contribution columns in a request whose metric_protocol is gram",
    )
    assert vr.key is not None
    first = vr.states.get((1, "round"), {})
    sources = rec.sources
    if vr.spec.get("solver") == "exact":  # the members are the trainers' checked parts
        members, what = exact_state(vr).get("parts"), "part of the exact model"
    else:
        members, what = [first.get(t) for t in vr.active], "signed round-one state"
    vr.require(
        sources == members and vr.request is None,
        "link",
        f"the contribution request is not over every trainer's {what}",
    )
    vr.ok("link")
    outgoing = [vr.declare(ref) for ref in rec.outgoing]
    exponents = [parse_hex_ints(e, "exponents", 2 * vr.key.key_bits) for e in rec.exponents]
    vr.require(len(outgoing) == len(sources) == len(exponents), "format", "sizes differ")
    vr.request = {"outgoing": outgoing}
    check_rerandomization(vr, sources, outgoing, exponents)


def on_contribution_columns(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.ContributionColumns.from_body(body)
    party = vr.records[vr.seq]["party"]
    vr.require(
        vr.request is not None and rec.inputs == vr.request["outgoing"],
        "link",
        f"{party}'s columns are not computed from the requested updates",
    )
    vr.ok("link")
    vr.require(party not in vr.columns, "completeness", f"{party} answered twice")
    columns = [vr.declare(ref) for ref in rec.columns]
    vr.require(len(columns) == len(vr.active) + 1, "format", "one column per trainer plus one")
    vr.columns[party] = columns


def on_mix_columns(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.MixColumns.from_body(body)
    vr.require(
        rec.inputs == [vr.columns.get(v) for v in vr.validators] and vr.mix_columns is None,
        "link",
        "the mixed columns are not over every validator's signed columns",
    )
    vr.ok("link")
    vr.require(_is_hex(rec.commitment, 64), "format", "malformed rotation commitment")
    columns = [vr.declare(ref) for ref in rec.columns]
    vr.require(len(columns) == len(vr.active) + 1, "format", "one column per trainer plus one")
    vr.mix_columns = {"columns": columns}
    vr.mix_columns_hash = vr.hashes[vr.seq]


def on_remix_columns(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.RemixColumns.from_body(body)
    party = vr.records[vr.seq]["party"]
    vr._remixer(party, contribution_remixer(vr.validators), "the contribution columns")
    mixed = vr.mix_columns
    vr.require(
        mixed is not None and rec.inputs == mixed["columns"] and vr.remixed_columns is None,
        "link",
        "the remixed columns are not of the aggregator's mixed columns, once",
    )
    assert mixed is not None
    vr.ok("link")
    vr.require(_is_hex(rec.commitment, 64), "format", "malformed rotation commitment")
    columns = [vr.declare(ref) for ref in rec.columns]
    vr.require(len(columns) == len(mixed["columns"]), "remixer", "one column per column")
    for source, remixed in zip(mixed["columns"], columns, strict=True):
        vr._remixed_ref(source, remixed)
    vr.remixed_columns = columns
    vr.mix_columns_hash = vr.hashes[vr.seq]


def _denominator(vr: Verifier, rec: records.ContributionValues) -> int:
    """The exact route's columns are raised to its model's metric denominator; else 1."""
    exact = vr.spec.get("solver") == "exact"
    expected = f"{vr.exact_denominator:x}" if exact else ""
    vr.require(
        rec.denominator == expected and (not exact or vr.exact_denominator > 0),
        "format",
        "the contributions' denominator is not the exact model's metric's",
    )
    return vr.exact_denominator if exact else 1


def on_contribution_values(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.ContributionValues.from_body(body)
    what = "remixed"  # by the only validator too
    decrypted = vr.remixed_columns
    vr.require(
        decrypted is not None and rec.columns == decrypted,
        "link",
        f"the contributions are not a decryption of the {what} columns",
    )
    assert decrypted is not None
    values = rec.values
    m = len(vr.active)
    vr.require(
        isinstance(values, list) and len(values) == m and all(_is_number(v) for v in values),
        "format",
        "one Shapley value per trainer",
    )
    vr.contributions = [float(v) for v in values]
    measured = dict(zip(vr.active, vr.contributions, strict=True))
    vr.report.contributions = {t: measured.get(t, 0.0) for t in vr.trainers}
    base_round = rec.base_round
    vr.require(
        base_round == 0 and base_round in vr.sse,
        "link",
        "contributions must be measured from the round-0 metric",
    )
    vr.ok("link")
    exponents = [vr.exponent(d) for d in decrypted]
    denominator = _denominator(vr, rec)
    if denominator == 1:
        columns = proven_packed(vr, decrypted, body)
    else:  # the parts' residues z/δ, raised to the exact model's denominator
        columns = proven_packed_ciphertexts(
            vr,
            [vr.vector(d, sealed=False) or [] for d in decrypted],
            [denominator_exponent(e, denominator) for e in exponents],
            body,
            denominator,
        )
    gram = gram_from_ints(columns, exponents, denominator)
    published_gram = rec.gram
    vr.expect(
        published_gram == [[float(v) for v in row] for row in gram],
        "gram",
        "the published Gram matrix is not that of the proven columns",
    )
    base_sse = vr.sse[base_round]
    vr.expect(
        rec.base_sse == base_sse,
        "shapley",
        "the empty coalition's error is not the proven round-0 error",
    )
    seed = shapley_seed(vr.mix_columns_hash)
    vr.expect(
        rec.seed == seed and rec.method == shapley_method(m),
        "shapley seed",
        "the Shapley seed or method is not the one the transcript fixes",
    )
    recomputed = shapley_values(gram, base_sse)
    scale = max(1.0, float(np.max(np.abs(recomputed))))
    bad = [
        i
        for i, (v, r) in enumerate(zip(values, recomputed, strict=True))
        if not abs(v - r) <= SHAPLEY_RTOL * scale
    ]
    vr.expect(
        not bad,
        "shapley",
        "Shapley value(s) of "
        + ", ".join(vr.active[i] for i in bad)
        + " do not recompute from the proven Gram matrix",
    )
