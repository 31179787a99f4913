"""The Gram metric (``metric_protocol: gram``): the validators' Gram matrices, each batch
of forms, and the metric or contributions published from it (roles/forms.py).

What is recomputed: the summed ``Enc(H)``; each batch's vectors from the round's total or
the round-one states and the initial model (with the sealed file); the remixer's proof
of added plaintexts; the buyer's ``ũ`` (packed decryption proofs), its ``Enc(Hũ)`` and
terms from ``Enc(H)`` and ``ũ``; the forms' decryption proofs; the published metric or
Shapley values from the forms. Not recomputable: the two mask holders' shares (that
would reveal their masks) — committed to by their signatures, as the rotations were.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gmpy2
import numpy as np

from deltaml.crypto import EncryptedVector
from deltaml.crypto.knowledge import check_added_plaintexts
from deltaml.crypto.packing import slot_bits
from deltaml.crypto.quadform import EncryptedGram, public_products
from deltaml.errors import DeltaMLValueError
from deltaml.evidence.checks.base import Skip, Verifier, _indices, _is_number
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
    gram_of,
    metric_pairs,
    metric_vector,
    opened_exponent,
    proof_context,
    proof_of,
)
from deltaml.protocol import form_records as fr
from deltaml.protocol.exact_messages import ring_vector
from deltaml.protocol.rules import form_remixer, form_round

SHAPLEY_RTOL = 1e-9


def _gram_only(vr: Verifier) -> None:
    vr.require(
        vr.spec.get("metric_protocol") == "gram",
        "format",
        "a Gram-metric record in a request whose metric_protocol is not gram",
    )


def _party(vr: Verifier) -> str:
    return str(vr.records[vr.seq]["party"])


def _batch(vr: Verifier, label: str) -> dict[str, Any]:
    batch = vr.forms.get(label)
    vr.require(batch is not None, "link", f"no batch {label[:40]!r} was asked for")
    assert batch is not None
    return batch


def _remixers_batch(vr: Verifier, label: str) -> dict[str, Any]:
    """The batch ``label`` names, of a record the remixer the public rule names signed."""
    batch = _batch(vr, label)
    named = form_remixer(vr.validators, label, int(vr.spec["eval_every"]))
    vr._remixer(_party(vr), named, label)
    return batch


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
    shares[party] = (vr.declare(rec.gram), rec.rows)


def on_gram_total(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.GramTotal.from_body(body)
    _gram_only(vr)
    assert vr.key is not None
    shares = vr.forms.get("shares", {})
    vr.require(
        "gram" not in vr.forms
        and rec.inputs == [shares.get(v, ("", 0))[0] for v in vr.validators]
        and rec.rows == sum(shares.get(v, ("", 0))[1] for v in vr.validators),
        "link",
        "the Gram total is not over every validator's signed share",
    )
    vr.ok("link")
    total = vr.declare(rec.total)
    vr.forms["gram"], vr.forms["rows"] = total, rec.rows
    parts = [vr.vector(d, sealed=True) for d in rec.inputs]
    summed = vr.vector(total, sealed=False)
    assert summed is not None
    if any(p is None for p in parts):
        return
    n2 = vr.key.nsquare
    expected = [1] * len(summed)
    for part in parts:
        assert part is not None
        vr.require(len(part) == len(summed), "sum", "a Gram matrix of another size")
        expected = [e * c % n2 for e, c in zip(expected, part, strict=True)]
    bad = [i for i, (e, c) in enumerate(zip(expected, summed, strict=True)) if e != c]
    vr.expect(not bad, "sum", f"Gram entries {_indices(bad)} are not the shares' product")


def _gram(vr: Verifier) -> EncryptedGram:
    assert vr.key is not None
    digest = vr.forms.get("gram")
    vr.require(digest is not None, "link", "a batch before the validators' Gram total")
    assert digest is not None
    cts = vr.vector(digest, sealed=False)
    assert cts is not None
    try:
        return gram_of(ring_vector(vr.key, cts))
    except DeltaMLValueError as exc:
        vr.fail("format", str(exc))
        raise Skip from None


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
    vr.require(
        rec.scale == scale and rec.pairs == list(flatten_pairs(pairs)),
        "link",
        f"{rec.label} is not of the scale and pairs the rules give",
    )
    vectors = [vr.declare(ref) for ref in rec.vectors]
    masked = [vr.declare(ref) for ref in rec.masked]
    vr.require(len(vectors) == len(masked) == (m if k is None else 1), "format", "sizes differ")
    vr.forms[rec.label] = {"scale": scale, "pairs": pairs, "masked": masked, "round": k}
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
    batch = _remixers_batch(vr, rec.label)
    vr.require(
        rec.inputs == batch["masked"] and "remixed" not in batch,
        "link",
        f"the remixer's vectors of {rec.label} are not of the aggregator's, once",
    )
    remixed = [vr.declare(ref) for ref in rec.vectors]
    batch["remixed"] = remixed
    batch["gram_masks"] = [vr.declare(ref) for ref in rec.gram_masks]
    assert vr.key is not None
    before = [c for d in rec.inputs for c in (vr.vector(d, sealed=False) or [])]
    after = [c for d in remixed for c in (vr.vector(d, sealed=False) or [])]
    proof = proof_of(rec.proof) if len(rec.proof) == 3 else None
    vr.expect(
        proof is not None
        and check_added_plaintexts(vr.key, proof_context(rec.label, vr.key), before, after, proof),
        "proof of added plaintexts",
        f"the remixer does not prove what it added to {rec.label}",
    )


def on_form_products(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.FormProducts.from_body(body)
    batch = _batch(vr, rec.label)
    vr.require(
        rec.masked == batch.get("remixed") and rec.gram == vr.forms.get("gram")
        and "products" not in batch,
        "link",
        f"the buyer's products of {rec.label} are not over the remixer's vectors and Enc(H)",
    )  # fmt: skip
    batch["products"] = [vr.declare(ref) for ref in rec.products]
    batch["terms"] = vr.declare(rec.terms)


def on_form_share(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.FormShare.from_body(body)
    batch = _batch(vr, rec.label)
    vr.require("terms" in batch and "share" not in batch, "link", "a share out of order")
    batch["share"] = vr.declare(rec.share)


def on_form_combined(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.FormCombined.from_body(body)
    batch = _remixers_batch(vr, rec.label)
    vr.require(
        rec.terms == batch.get("terms") and rec.share == batch.get("share")
        and "combined" not in batch,
        "link",
        f"the remixer's sums of {rec.label} are not over the buyer's terms and the share",
    )  # fmt: skip
    batch["combined"] = vr.declare(rec.values)


def on_form_values(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = fr.FormValues.from_body(body)
    batch = _batch(vr, rec.label)
    vr.require("combined" in batch and "values" not in batch, "link", "forms out of order")
    assert vr.key is not None
    batch["values"] = True
    forms = proven(vr, batch["combined"], rec.plaintexts, rec.randomness)
    try:
        published = [int(v, 16) for v in rec.values]
    except (TypeError, ValueError):
        published = []
    vr.require(published == forms, "decryption proof", "the forms are not the proven values")
    opened = _opened(vr, batch, body)
    gram = _gram(vr)
    products, terms = public_products(gram, opened, batch["pairs"])
    vr.expect(
        [vector_digest(ring_vector(vr.key, p)) for p in products] == batch["products"]
        and vector_digest(ring_vector(vr.key, terms)) == batch["terms"],
        "products",
        f"the buyer's Enc(Hũ) or terms of {rec.label} do not recompute from Enc(H) and ũ",
    )
    exponent, scale = vr.exponent(batch["masked"][0]), batch["scale"]
    reals = [form_real(v, scale, exponent, int(vr.spec["precision_bits"])) for v in forms]
    _results(vr, rec, batch, reals)


def _opened(vr: Verifier, batch: dict[str, Any], body: Mapping[str, Any]) -> list[list[int]]:
    """``ũ``: the remixer's vectors decrypted packed, with the proof the buyer published."""
    remixed = batch["remixed"]
    vectors = [vr.vector(d, sealed=False) or [] for d in remixed]
    flat = [c for v in vectors for c in v]
    exponent = opened_exponent(vr.exponent(remixed[0]), batch["scale"])
    opening = {  # the layout is the public rule's: its slots are not the buyer's to name
        "slot_bits": slot_bits(exponent),
        "plaintexts": body.get("opened"),
        "randomness": body.get("opened_randomness"),
    }
    (values,) = proven_packed_ciphertexts(vr, [flat], [exponent], opening)
    size = len(vectors[0]) if vectors else 0
    return [values[i * size : (i + 1) * size] for i in range(len(vectors))]


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
    "GramTotal": on_gram_total,
    "FormMask": on_form_mask,
    "FormMasked": on_form_masked,
    "FormProducts": on_form_products,
    "FormShare": on_form_share,
    "FormCombined": on_form_combined,
    "FormValues": on_form_values,
}
