"""Packing before a proven decryption: round trips, the layout, refusals, the batch check."""

from __future__ import annotations

import random

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaml.crypto import PrivateKey, PublicKey, failed_decryptions, prove_decryption
from deltaml.crypto.packing import (
    GUARD_BITS,
    MAGNITUDE_BITS,
    PackingError,
    PackingLayout,
    failed_packed_decryptions,
    magnitude_limit,
    prove_packed_decryption,
    slot_bits,
)
from deltaml.errors import DeltaMLValueError

FAST = settings(max_examples=25, deadline=None)
Keys = tuple[PublicKey, PrivateKey]


def _encrypt(pk: PublicKey, values: list[int]) -> list[int]:
    return [int(pk.raw_encrypt(pk.encode_signed(v))) for v in values]


def _extremes(exponent: int) -> list[int]:
    """The largest and smallest values the bound admits, zero and ±1."""
    limit = magnitude_limit(exponent)
    return [limit - 1, -(limit - 1), 0, 1, -1, limit // 2, -limit // 3]


def test_the_slot_width_is_a_function_of_the_exponent_only(keys512: Keys) -> None:
    pk, _ = keys512
    assert slot_bits(40) == 40 + MAGNITUDE_BITS + GUARD_BITS
    assert magnitude_limit(40) == 2 ** (40 + MAGNITUDE_BITS)
    layout = PackingLayout.of(pk, [7, 5], [40, 72])
    assert layout.slot_bits == slot_bits(72)  # one width for all: the largest exponent's
    assert layout.offset == 2 ** (layout.slot_bits - 1) > magnitude_limit(72)
    # The packed plaintext stays below 2^(bits(n) - 1) < n: nothing can wrap.
    assert layout.slots * layout.slot_bits <= pk.n.bit_length() - 1
    assert (layout.slots + 1) * layout.slot_bits > pk.n.bit_length() - 1
    assert layout.packed_count == -(-12 // layout.slots)


@FAST
@given(st.data())
def test_round_trip_with_negative_and_extreme_values(keys512: Keys, data: st.DataObject) -> None:
    pk, sk = keys512
    exponent = data.draw(st.sampled_from([0, 16, 40, 104]))
    limit = magnitude_limit(exponent)
    values = data.draw(
        st.lists(
            st.one_of(st.integers(-limit + 1, limit - 1), st.sampled_from(_extremes(exponent))),
            min_size=1,
            max_size=20,
        )
    )
    opening = prove_packed_decryption(sk, [(_encrypt(pk, values), exponent)])
    assert opening.values == [values]
    assert len(opening.plaintexts) == opening.layout.packed_count <= len(values)


def test_several_vectors_several_packed_ciphertexts_and_per_value_equality(
    keys768: Keys,
) -> None:
    """Columns of different lengths and exponents, over many packed ciphertexts, unpack to
    exactly the values one proven decryption per ciphertext gives."""
    pk, sk = keys768
    rng = random.Random(7)
    exponents = [136, 136, 100]
    columns = [
        [rng.randrange(-magnitude_limit(e) + 1, magnitude_limit(e)) for _ in range(size)]
        for e, size in zip(exponents, [13, 13, 6], strict=True)
    ]
    columns[0][:3] = _extremes(136)[:3]
    encrypted = [_encrypt(pk, c) for c in columns]
    opening = prove_packed_decryption(sk, list(zip(encrypted, exponents, strict=True)))
    layout = opening.layout
    assert layout.slots >= 2 and layout.packed_count == -(-32 // layout.slots) >= 3
    assert opening.values == columns
    one_by_one, _ = prove_decryption(sk, [c for cts in encrypted for c in cts])
    signed = [sk.decode_signed(m) for m in one_by_one]
    assert [v for column in opening.values for v in column] == signed
    # The buyer's CRT packing and anyone's public packing are the same ciphertexts ...
    flat = [c for cts in encrypted for c in cts]
    packed = layout.pack(pk, flat)
    assert packed == layout.pack_with_key(sk, flat)
    # ... and what it proves opens them, one by one and in the folded batch.
    assert failed_decryptions(pk, packed, opening.plaintexts, opening.randomness) == []
    assert failed_packed_decryptions(pk, layout, flat, opening.plaintexts, opening.randomness) == []


def test_the_packed_plaintext_is_the_offset_values_in_slots(keys512: Keys) -> None:
    pk, sk = keys512
    values = [5, -3, 0]
    opening = prove_packed_decryption(sk, [(_encrypt(pk, values), 0)])
    layout = opening.layout
    w, b = layout.slot_bits, layout.offset
    assert opening.plaintexts == [sum((v + b) << (w * j) for j, v in enumerate(values))]


@pytest.mark.parametrize("sign", [1, -1])
def test_a_value_outside_the_bound_is_refused(keys512: Keys, sign: int) -> None:
    pk, sk = keys512
    exponent = 40
    limit = magnitude_limit(exponent)
    for beyond in (limit, 2 * limit, limit << (GUARD_BITS - 2)):
        values = [1, sign * beyond, -2]
        with pytest.raises(PackingError, match="magnitude bound"):
            prove_packed_decryption(sk, [(_encrypt(pk, values), exponent)])


def test_only_values_beyond_the_offset_carry(keys512: Keys) -> None:
    """Up to the offset ``B`` nothing carries, and beyond the bound is refused (above).

    Past ``B`` a value carries into the next slot — the buyer then reads another vector,
    one the sender could have sent itself — or past the last slot, which is refused. Only
    a dishonest sender gets there: an honest value would have to exceed the magnitude
    bound ``2^(GUARD_BITS - 1)`` times over.
    """
    pk, sk = keys512
    layout = PackingLayout.of(pk, [3], [0])
    w, b = layout.slot_bits, layout.offset
    assert b == magnitude_limit(0) << (GUARD_BITS - 1)
    carried = prove_packed_decryption(sk, [(_encrypt(pk, [2**w + 5, 0, 0]), 0)])
    assert carried.values == [[5, 1, 0]]
    for values in ([0, 0, 2**w], [0, 0, b], [pk.max_int, 0, 0]):
        with pytest.raises(PackingError):
            prove_packed_decryption(sk, [(_encrypt(pk, values), 0)])


def test_unpack_refuses_malformed_packed_plaintexts(keys512: Keys) -> None:
    pk, _ = keys512
    layout = PackingLayout.of(pk, [3], [0])
    w, b = layout.slot_bits, layout.offset
    good = sum(b << (w * j) for j in range(3))
    assert layout.unpack(pk, [good]) == [[0, 0, 0]]
    with pytest.raises(PackingError, match="above its last slot"):
        layout.unpack(pk, [good + (1 << (3 * w))])
    with pytest.raises(PackingError, match="packed plaintexts"):
        layout.unpack(pk, [good, good])
    with pytest.raises(PackingError, match=r"\[0, n\)"):
        layout.unpack(pk, [pk.n])


def test_without_room_for_one_slot_each_value_is_decrypted_on_its_own(keys512: Keys) -> None:
    """An exponent within 64 bits of the key size: nothing is packed, the bound still holds."""
    pk, sk = keys512
    exponent = pk.n.bit_length() - MAGNITUDE_BITS - GUARD_BITS
    layout = PackingLayout.of(pk, [4], [exponent])
    assert layout.slots == 0 and layout.packed_count == 4
    values = [3 << exponent, -(5 << exponent), 0, -1]
    cts = _encrypt(pk, values)
    assert layout.pack(pk, cts) == cts
    opening = prove_packed_decryption(sk, [(cts, exponent)])
    assert opening.values == [values]
    assert failed_packed_decryptions(pk, layout, cts, opening.plaintexts, opening.randomness) == []


def test_the_batch_check_names_a_wrong_packed_plaintext(keys512: Keys) -> None:
    pk, sk = keys512
    rng = random.Random(3)
    values = [rng.randrange(-(2**55), 2**55) for _ in range(20)]
    cts = _encrypt(pk, values)
    opening = prove_packed_decryption(sk, [(cts, 8)])
    layout = opening.layout
    assert layout.packed_count == 3
    ms, rs = list(opening.plaintexts), list(opening.randomness)
    assert failed_packed_decryptions(pk, layout, cts, ms, rs) == []
    for k in range(layout.packed_count):
        wrong = [*ms[:k], (ms[k] + (1 << layout.slot_bits)) % pk.n, *ms[k + 1 :]]
        assert failed_packed_decryptions(pk, layout, cts, wrong, rs) == [k]
    swapped = [rs[1], rs[0], *rs[2:]]
    assert failed_packed_decryptions(pk, layout, cts, ms, swapped) == [0, 1]
    with pytest.raises(DeltaMLValueError):
        failed_packed_decryptions(pk, layout, cts, ms[:-1], rs[:-1])


def test_a_proof_for_another_slot_width_does_not_check(keys512: Keys) -> None:
    """A buyer who packs with another width proves other ciphertexts than the public rule's."""
    pk, sk = keys512
    values = list(range(-10, 10))
    cts = _encrypt(pk, values)
    layout = PackingLayout.of(pk, [20], [8])
    other = PackingLayout.of(pk, [20], [9])
    assert other.slot_bits == layout.slot_bits + 1 and other.packed_count == layout.packed_count
    theirs, their_r = prove_decryption(sk, other.pack(pk, cts))
    assert other.unpack(pk, theirs) == [values]
    failed = failed_packed_decryptions(pk, layout, cts, theirs, their_r)
    assert failed == list(range(layout.packed_count))


def test_pack_refuses_another_layout(keys512: Keys) -> None:
    pk, _ = keys512
    layout = PackingLayout.of(pk, [2], [0])
    with pytest.raises(DeltaMLValueError):
        layout.pack(pk, [1, 2, 3])
    with pytest.raises(DeltaMLValueError):
        PackingLayout.of(pk, [], [])


def test_packing_adds_the_offsets_with_randomness_one(keys512: Keys) -> None:
    """One slot: the packed ciphertext is ``c·(1 + B·n)``, the offset added deterministically."""
    pk, _ = keys512
    layout = PackingLayout.of(pk, [1], [0])
    c = _encrypt(pk, [7])[0]
    n, n2 = pk.n, pk.nsquare
    assert layout.pack(pk, [c]) == [gmpy2.mpz(c) * (1 + layout.offset * n) % n2]


@FAST
@given(st.data())
def test_the_verifiers_sparse_multi_exponentiation_is_the_product(
    keys512: Keys, data: st.DataObject
) -> None:
    from deltaml.crypto.packing import _sparse_multi_exp

    pk, _ = keys512
    n2 = gmpy2.mpz(pk.nsquare)
    count = data.draw(st.integers(0, 6))
    bases = [gmpy2.mpz(data.draw(st.integers(1, pk.nsquare - 1))) for _ in range(count)]
    exponents = [
        data.draw(st.integers(0, 2**64)) << data.draw(st.integers(0, 300)) for _ in range(count)
    ]
    expected = gmpy2.mpz(1)
    for b, e in zip(bases, exponents, strict=True):
        expected = expected * gmpy2.powmod(b, e, n2) % n2
    assert _sparse_multi_exp(list(zip(bases, exponents, strict=True)), n2) == expected


def test_a_scaled_packing_opens_the_residues_times_the_scale(keys512: Keys) -> None:
    """Residues ``z/δ`` (the exact model's): packed, the packed ciphertexts raised to a
    multiple ``Δ`` of ``δ``, they open as the integers ``Δz/δ`` — the same as raising
    every ciphertext first — and the batch check holds for them and only them."""
    pk, sk = keys512
    n, delta = pk.n, 7 * 1009
    rng = random.Random(5)
    numerators = [rng.randrange(-(2**30), 2**30) for _ in range(20)]
    residues = [a * pow(7, -1, n) % n for a in numerators]  # a/7 mod n
    cts = [int(pk.raw_encrypt(r)) for r in residues]
    exponent = 8 + delta.bit_length()
    opening = prove_packed_decryption(sk, [(cts, exponent)], delta)
    assert opening.values == [[a * 1009 for a in numerators]]
    one_by_one = [int(gmpy2.powmod(c, delta, pk.nsquare)) for c in cts]
    assert prove_packed_decryption(sk, [(one_by_one, exponent)]).values == opening.values
    layout = opening.layout
    assert layout.scale == delta and layout.packed_count < len(cts)
    ms, rs = list(opening.plaintexts), list(opening.randomness)
    assert failed_packed_decryptions(pk, layout, cts, ms, rs) == []
    unscaled = PackingLayout.of(pk, [len(cts)], [exponent])
    assert failed_packed_decryptions(pk, unscaled, cts, ms, rs) != []
    with pytest.raises(DeltaMLValueError):
        PackingLayout.of(pk, [1], [8], 0)
