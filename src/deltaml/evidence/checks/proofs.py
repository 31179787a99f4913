"""Shared checks on ciphertexts: decryption proofs (plain and packed), sums, re-randomizations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import gmpy2

from deltaml.crypto import failed_decryptions, failed_rerandomizations
from deltaml.crypto.packing import PackingError, PackingLayout, failed_packed_decryptions
from deltaml.errors import DeltaMLValueError
from deltaml.evidence.checks.base import Skip, Verifier, _indices
from deltaml.evidence.published import (
    signed_plaintext,
)
from deltaml.evidence.signatures import (
    parse_hex_ints,
)


def proven(vr: Verifier, digest: str, plaintexts: object, randomness: object) -> list[int]:
    """Check the proofs for a public vector; return the signed plaintexts."""
    assert vr.key is not None
    ciphertexts = vr.vector(digest, sealed=False)
    assert ciphertexts is not None
    bits = vr.key.key_bits
    try:
        ms = parse_hex_ints(plaintexts, "plaintexts", bits)
        rs = parse_hex_ints(randomness, "randomness", bits)
    except DeltaMLValueError as exc:
        vr.fail("format", str(exc))
        raise Skip from None
    vr.require(
        len(ms) == len(rs) == len(ciphertexts),
        "decryption proof",
        f"{len(ms)} plaintexts and {len(rs)} proofs for {len(ciphertexts)} ciphertexts",
    )
    failed = failed_decryptions(vr.key, ciphertexts, ms, rs)
    vr.require(
        not failed,
        "decryption proof",
        f"value(s) {_indices(failed)} do not open their ciphertexts",
    )
    vr.ok("decryption proof", len(ms))
    half = vr.key.max_int
    vr.require(
        all(v <= half or v >= vr.key.n - half for v in ms),
        "decryption proof",
        "a proven plaintext lies in the overflow band",
    )
    return [signed_plaintext(vr.key, v) for v in ms]


def proven_packed(vr: Verifier, digests: Sequence[str], body: Mapping[str, Any]) -> list[list[int]]:
    """Check a packed decryption of public vectors; return each vector's signed values.

    The packed ciphertexts are recomputed from the vectors' ciphertexts with the
    public layout (:class:`~deltaml.crypto.packing.PackingLayout`), never taken from
    the buyer; the body's ``slot_bits`` must be the layout's.
    """
    vectors = [vr.vector(d, sealed=False) or [] for d in digests]  # public: never None
    return proven_packed_ciphertexts(vr, vectors, [vr.exponent(d) for d in digests], body)


def proven_packed_ciphertexts(
    vr: Verifier,
    vectors: Sequence[Sequence[int]],
    exponents: Sequence[int],
    body: Mapping[str, Any],
    scale: int = 1,
) -> list[list[int]]:
    """:func:`proven_packed` of vectors given by their ciphertexts and exponents (a
    metric vector of the exact model: its packed ciphertexts raised to ``scale``, its
    denominator)."""
    assert vr.key is not None
    ciphertexts = [c for v in vectors for c in v]
    layout = PackingLayout.of(vr.key, [len(v) for v in vectors], list(exponents), scale)
    vr.require(
        body.get("slot_bits") == layout.slot_bits,
        "packing",
        f"slots of {body.get('slot_bits')!r} bits, the public rule gives {layout.slot_bits}",
    )
    bits = vr.key.key_bits
    try:
        ms = parse_hex_ints(body["plaintexts"], "plaintexts", bits)
        rs = parse_hex_ints(body["randomness"], "randomness", bits)
    except DeltaMLValueError as exc:
        vr.fail("format", str(exc))
        raise Skip from None
    vr.require(
        len(ms) == len(rs) == layout.packed_count,
        "decryption proof",
        f"{len(ms)} plaintexts and {len(rs)} proofs for {layout.packed_count} packed "
        f"ciphertexts of {layout.count} values",
    )
    failed = failed_packed_decryptions(vr.key, layout, ciphertexts, ms, rs)
    vr.require(
        not failed,
        "decryption proof",
        f"packed value(s) {_indices(failed)} do not open their packed ciphertexts",
    )
    vr.ok("decryption proof", len(ms))
    try:
        values = layout.unpack(vr.key, ms)
    except PackingError as exc:
        vr.fail("packing", str(exc))
        raise Skip from None
    vr.ok("packing")
    return values


def check_sum(vr: Verifier, total: str, inputs: Iterable[str]) -> None:
    assert vr.key is not None
    parts = [vr.vector(d, sealed=True) for d in inputs]
    result = vr.vector(total, sealed=True)
    if result is None or any(p is None for p in parts):
        return
    n2 = vr.key.nsquare
    exponent = vr.exponent(total)
    expected = [1] * len(result)
    for digest, part in zip(inputs, parts, strict=True):
        assert part is not None
        shift = exponent - vr.exponent(digest)
        vr.require(
            shift >= 0 and len(part) == len(result),
            "sum",
            "a summand does not fit the total's length or exponent",
        )
        factor = 1 << shift
        expected = [
            e * int(gmpy2.powmod(c, factor, n2)) % n2 for e, c in zip(expected, part, strict=True)
        ]
    bad = [i for i, (e, c) in enumerate(zip(expected, result, strict=True)) if e != c]
    vr.expect(not bad, "sum", f"element(s) {_indices(bad)} are not the product of the inputs")


def check_rerandomization(
    vr: Verifier, sources: Sequence[str], outgoing: Sequence[str], exponents: Sequence[list[int]]
) -> None:
    assert vr.key is not None
    for source, out, alphas in zip(sources, outgoing, exponents, strict=True):
        before = vr.vector(source, sealed=True)
        after = vr.vector(out, sealed=True)
        if before is None or after is None:
            continue
        vr.require(
            len(before) == len(after) == len(alphas) and vr.exponent(source) == vr.exponent(out),
            "re-randomization",
            "sizes or exponents differ",
        )
        bad = failed_rerandomizations(vr.key, before, after, alphas)
        vr.expect(
            not bad,
            "re-randomization",
            f"element(s) {_indices(bad)} do not encrypt what was summed",
        )
