"""The Gram metric (``metric_protocol: gram``): the validators' Gram matrices, each batch
of forms, and the metric or contributions published from it (roles/forms.py).

What is recomputed: that both mask holders summed every validator's signed share; each
batch's vectors from the round's total or the round-one states and the initial model,
and the first holder's proof of added plaintexts (with the sealed file); the second
holder's proof; the buyer's ``ũ`` (packed decryption proofs); the forms' decryption
proofs; the published metric or Shapley values from the forms. Not recomputable: the
two holders' shares (that would reveal their masks) — committed to by their signatures,
as the rotations were.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gmpy2
import numpy as np

from deltaml.crypto import EncryptedVector
from deltaml.crypto.knowledge import check_added_plaintexts
from deltaml.crypto.packing import slot_bits
from deltaml.errors import DeltaMLValueError
from deltaml.evidence.checks.base import Skip, Verifier, _is_number
from deltaml.evidence.checks.proofs import proven, proven_packed_ciphertexts
from deltaml.evidence.published import metric_value
from deltaml.evidence.signatures import vector_digest
from deltaml.learning.contributions import shapley_from_totals
from deltaml.learning.gram_metric import (
    contribution_pairs,
    contribution_vectors,
    encoded_relaxation,
    flatten_pairs,
    form_real,
    metric_pairs,
    metric_vector,
    opened_digest,
    opened_exponent,
    proof_context,
    proof_of,
    shares_digest,
)
from deltaml.protocol import form_messages as fm
from deltaml.protocol import form_records as fr
from deltaml.protocol.rules import form_holders, form_round

SHAPLEY_RTOL = 1e-9


def _gram_only(vr: Verifier) -> None:
    vr.require(
        vr.spec.get("metric_protocol") == "gram",
        "format",
        "a Gram-metric record in a request whose metric_protocol is not gram",
    )


def _party(vr: Verifier) -> str:
    return str(vr.records[vr.seq]["party"])


def _batch(vr: Verifier, label: str, step: str, after: str) -> dict[str, Any]:
    """The batch ``label`` names, whose ``after`` step is recorded and ``step`` not yet."""
    batch = vr.forms.get(label)
    vr.require(batch is not None, "link", f"no batch {label[:40]!r} was asked for")
    assert batch is not None
    vr.require(after in batch and step not in batch, "link", f"{label}: a {step} out of order")
    return batch


def _holder(vr: Verifier, batch: dict[str, Any], which: int, label: str) -> None:
    """The record comes from the batch's first (0) or second (1) holder by the rule; the
    first is the aggregator when there is one validator."""
    named = batch["holders"][which]
    party = _party(vr)
    if named is None:
        role = vr.participants.get(party, ("", ""))[0]
        vr.require(role == "aggregator", "remixer", f"{party} holds no mask of {label}")
    else:
        vr._remixer(party, named, label)


def _vector(vr: Verifier, digest: str, ciphertexts: list[int]) -> EncryptedVector:
    assert vr.key is not None
    return EncryptedVector(vr.key, [gmpy2.mpz(c) for c in ciphertexts], vr.exponent(digest), 0)


# -- the Gram matrices --------------------------------------------------------------------
def on_gram_share(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.GramShare.from_body(body)
    _gram_only(vr)
    party = _party(vr)
    shares = vr.forms.setdefault("shares", {})
    vr.require(party not in shares, "completeness", f"{party} sent its Gram matrix twice")
    vr.require(type(rec.rows) is int and rec.rows > 0, "format", "rows must be positive")
    try:
        bound = int(rec.bound, 16)
    except (TypeError, ValueError):
        bound = -1
    vr.require(bound >= 0, "format", f"{party}'s Gram bound is not a hex number")
    shares[party] = (vr.declare(rec.gram), rec.rows)


def _gram(vr: Verifier) -> str:
    """What both holders of every batch must have summed: every validator's share."""
    if "gram" not in vr.forms:
        shares = vr.forms.get("shares", {})
        vr.require(
            all(v in shares for v in vr.validators),
            "completeness",
            "a batch before every validator's Gram matrix",
        )
        vr.forms["gram"] = shares_digest([shares[v][0] for v in vr.validators])
        vr.forms["rows"] = sum(shares[v][1] for v in vr.validators)
    return str(vr.forms["gram"])


# -- a batch --------------------------------------------------------------------------------
def on_form_mask(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.FormMask.from_body(body)
    _gram_only(vr)
    try:
        k = form_round(rec.label)
    except DeltaMLValueError as exc:
        vr.fail("format", str(exc))
        raise Skip from None
    vr.require(rec.label not in vr.forms, "completeness", f"{rec.label} asked twice")
    m = len(vr.active)
    precision = int(vr.spec.get("precision_bits", 0))
    if k is None:
        vr.require(bool(vr.spec.get("contributions")), "link", "contributions not asked for")
        scale = encoded_relaxation(float(vr.spec.get("relaxation", 0)), precision)
        pairs = contribution_pairs(m)
    else:
        vr.require(k == vr._rounds_done(), "link", f"{rec.label} is not the last round's")
        scale, pairs = m, metric_pairs()
    holders = form_holders(vr.validators, rec.label, int(vr.spec["eval_every"]))
    vr.require(
        rec.scale == scale
        and rec.pairs == list(flatten_pairs(pairs))
        and holders is not None
        and rec.holders == [holders[0] or "", holders[1]],
        "link",
        f"{rec.label} is not of the scale, pairs and holders the rules give",
    )
    vectors = [vr.declare(ref) for ref in rec.vectors]
    vr.require(len(vectors) == (m if k is None else 1), "format", "sizes differ")
    vr.forms[rec.label] = {
        "scale": scale, "pairs": pairs, "vectors": vectors, "round": k, "holders": holders,
    }  # fmt: skip
    _check_vectors(vr, k, vectors, precision)


def _check_vectors(vr: Verifier, k: int | None, vectors: list[str], precision: int) -> None:
    """The evaluated vectors are the round's total, or the trainers' round-one models
    (sealed: checked when the sealed file is given)."""
    if k is not None:
        vr.require(vr.current_total is not None, "link", "no total to evaluate")
        assert vr.current_total is not None
        total = vr.vector(vr.current_total, sealed=True)
        if total is None:
            return
        expected = [metric_vector(_vector(vr, vr.current_total, total), len(vr.active))]
    else:
        first = vr.states.get((1, "round"), {})
        states = [first.get(t) for t in vr.active]
        vr.require(all(states) and bool(vr.initial_model), "link", "no round-one states")
        cts = [vr.vector(str(d), sealed=True) for d in states]
        z0 = vr.vector(vr.initial_model, sealed=False)
        if any(c is None for c in cts) or z0 is None:
            return
        relaxation = float(vr.spec.get("relaxation", 0))
        expected = contribution_vectors(
            [_vector(vr, str(d), c or []) for d, c in zip(states, cts, strict=True)],
            _vector(vr, vr.initial_model, z0),
            relaxation,
            precision,
        )
    vr.expect(
        [vector_digest(v) for v in expected] == vectors
        and [v.exponent for v in expected] == [vr.exponent(d) for d in vectors],
        "link",
        "the batch's vectors are not the evaluated model's (or the round-one models)",
    )


def on_form_masked(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.FormMasked.from_body(body)
    batch = _batch(vr, rec.label, "second", "vectors")
    which, source = (0, "vectors") if "first" not in batch else (1, "first")
    _holder(vr, batch, which, rec.label)
    vr.require(
        rec.inputs == batch[source] and rec.gram == _gram(vr),
        "link",
        f"a holder's vectors of {rec.label} are not over its input and every Gram matrix",
    )
    out = [vr.declare(ref) for ref in rec.vectors]
    batch["second" if which else "first"] = out
    assert vr.key is not None
    before = [vr.vector(d, sealed=which == 0) for d in rec.inputs]
    if any(v is None for v in before):  # the evaluated vectors are sealed
        return
    flat_before = [c for v in before for c in v or []]
    after = [c for d in out for c in (vr.vector(d, sealed=False) or [])]
    proof = proof_of(rec.proof) if len(rec.proof) == 3 else None
    vr.expect(
        proof is not None
        and check_added_plaintexts(
            vr.key, proof_context(rec.label, vr.key), flat_before, after, proof
        ),
        "proof of added plaintexts",
        f"a holder does not prove what it added to {rec.label}",
    )


def on_form_cross(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.FormCross.from_body(body)
    batch = _batch(vr, rec.label, "cross", "opened")
    _holder(vr, batch, 1, rec.label)
    batch["cross"] = [vr.declare(ref) for ref in rec.products]


def on_form_opened(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.FormOpened.from_body(body)
    batch = _batch(vr, rec.label, "opened", "second")
    vr.require(
        rec.masked == batch["second"] and rec.first == batch["first"],
        "link",
        f"the buyer's ũ of {rec.label} is not of the holders' vectors",
    )
    second = batch["second"]
    vectors = [vr.vector(d, sealed=False) or [] for d in second]
    exponent = opened_exponent(vr.exponent(second[0]), batch["scale"])
    opening = {  # the layout is the public rule's: its slots are not the buyer's to name
        "slot_bits": slot_bits(exponent),
        "plaintexts": body.get("plaintexts"),
        "randomness": body.get("randomness"),
    }
    (values,) = proven_packed_ciphertexts(
        vr, [[c for v in vectors for c in v]], [exponent], opening
    )
    try:
        published = [int(v, 16) for v in rec.opened]
    except (TypeError, ValueError):
        published = []
    vr.require(published == values, "decryption proof", f"ũ of {rec.label} is not proven")
    batch["opened"] = opened_digest(
        fm.FormOpened(rec.label, tuple(rec.opened), (), (), tuple(rec.masked), tuple(rec.first))
    )


def on_form_share(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.FormShare.from_body(body)
    batch = _batch(vr, rec.label, "share", "cross")
    _holder(vr, batch, 0, rec.label)
    vr.require(
        rec.opened == batch["opened"] and rec.cross == batch["cross"],
        "link",
        f"the first share of {rec.label} is not over ũ and the remixer's products",
    )
    batch["share"] = vr.declare(rec.share)


def on_form_combined(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.FormCombined.from_body(body)
    batch = _batch(vr, rec.label, "combined", "share")
    _holder(vr, batch, 1, rec.label)
    vr.require(
        rec.opened == batch["opened"] and rec.share == batch["share"],
        "link",
        f"the remixer's sums of {rec.label} are not over the buyer's ũ and the first share",
    )
    batch["combined"] = vr.declare(rec.values)


def on_form_values(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.FormValues.from_body(body)
    batch = _batch(vr, rec.label, "values", "combined")
    batch["values"] = True
    forms = proven(vr, batch["combined"], rec.plaintexts, rec.randomness)
    try:
        published = [int(v, 16) for v in rec.values]
    except (TypeError, ValueError):
        published = []
    vr.require(published == forms, "decryption proof", "the forms are not the proven values")
    exponent, scale = vr.exponent(batch["vectors"][0]), batch["scale"]
    reals = [form_real(v, scale, exponent, int(vr.spec["precision_bits"])) for v in forms]
    _results(vr, rec, batch, reals)


def _results(vr: Verifier, rec: fr.FormValues, batch: dict[str, Any], reals: list[float]) -> None:
    k = batch["round"]
    results = rec.results
    vr.require(all(_is_number(v) for v in results), "format", "the results are not numbers")
    if k is not None:
        vr.require(vr.stats is not None and vr.model is not None, "link", "a metric first")
        assert vr.stats is not None and vr.model is not None
        vr.require(k not in vr.report.metrics, "completeness", f"a second metric, round {k}")
        sse = reals[0]
        recomputed = metric_value(vr.model, sse, int(vr.forms["rows"]), vr.stats)
        vr.sse[k] = sse
        vr.report.metrics[k] = float(results[0]) if results else float("nan")
        vr.expect(
            results == [recomputed],
            "metric",
            f"round {k}: published {results!r}, the proven forms give {recomputed!r}",
        )
        return
    m = len(vr.active)
    vr.require(0 in vr.sse and len(results) == m, "link", "contributions need the round-0 metric")
    vr.contributions = [float(v) for v in results]
    measured = dict(zip(vr.active, vr.contributions, strict=True))
    vr.report.contributions = {t: measured.get(t, 0.0) for t in vr.trainers}
    vr.expect(rec.base_sse == vr.sse[0], "shapley", "the empty coalition's error is not round 0's")
    own, with_total = np.array(reals[:m]), np.array(reals[m:])
    phi = shapley_from_totals(own, with_total, float(with_total.sum()), vr.sse[0])
    scale = max(1.0, float(np.max(np.abs(phi))))
    bad = [i for i in range(m) if not abs(results[i] - phi[i]) <= SHAPLEY_RTOL * scale]
    vr.expect(
        not bad,
        "shapley",
        "Shapley value(s) of " + ", ".join(vr.active[i] for i in bad) + " do not recompute",
    )


#: Record kind → check (``metric_protocol: gram``).
FORM_CHECKS = {
    "GramShare": on_gram_share,
    "FormMask": on_form_mask,
    "FormMasked": on_form_masked,
    "FormCross": on_form_cross,
    "FormOpened": on_form_opened,
    "FormShare": on_form_share,
    "FormCombined": on_form_combined,
    "FormValues": on_form_values,
}
