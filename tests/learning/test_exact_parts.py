"""Each trainer's part of the exact model (learning/exact_parts.py): the extra columns of
the one masked solve give ``m·u_i = m·H⁻¹g_i`` exactly, they add up to the model, the
buyer sees only uniform values, and the hidden check column catches a wrong solve."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from deltaml.crypto.paillier import generate_keypair
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.learning.exact_parts import (
    check_vector,
    draw_parts,
    extra_columns,
    mask_digest,
    unmask_parts,
)
from deltaml.learning.exact_solve import (
    ExactBuyer,
    TrainerMask,
    encrypt_residues,
    masked_length,
    masked_residues,
    precision_for,
    random_check,
    random_mask,
    split_masked,
    sum_ciphertexts,
    system_integers,
    zero_sum_shares,
)
from deltaml.learning.models import model_type
from deltaml.learning.ring import rational_reconstruction
from deltaml.learning.standardize import Standardization


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024, allow_test_keys=True)


def _terms(trainers: int = 4):
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    x, y = train.X, train.y
    stats = Standardization(len(x), x.mean(0), x.std(0), float(y.mean()), float(y.std()))
    model = model_type("linear")
    return [model.local_terms(s.X, s.y, stats) for s in split_owners(train, trainers, seed=0)]


def _solve(keys, terms):
    """The trainers' masked vectors with parts, summed; the buyer's solve."""
    public, private = keys
    n, d, m = public.n, len(terms[0].linear), len(terms)
    p = precision_for(public.key_bits, d)
    mask, check = random_mask(public, d), random_check(public, d)
    secret = draw_parts(public, d, m)
    extra = extra_columns(m)
    shares = zero_sum_shares(public, m, masked_length(d, 1, extra))
    vectors = []
    for i, (t, share) in enumerate(zip(terms, shares, strict=True)):
        h, g = system_integers(t, p)
        tm = TrainerMask(mask, check, share, secret.for_trainer(i, n))
        vectors.append(encrypt_residues(public, masked_residues(h, g, tm, n)))
    solve_part, _ = split_masked(sum_ciphertexts(vectors, public), d, 1, extra)
    buyer = ExactBuyer(public, private)
    return buyer, buyer.solve_masked(solve_part), mask, secret, p


def test_the_parts_are_each_trainers_share_of_the_exact_model(keys) -> None:
    public, private = keys
    terms = _terms()
    m, d = len(terms), len(terms[0].linear)
    _, solution, mask, secret, p = _solve(keys, terms)
    parts = unmask_parts(solution, secret.offsets, mask.scale, m, public)
    # what the trainers encrypted: their systems as integers at precision 2^-p
    systems = [system_integers(t, p) for t in terms]
    h_total = sum(np.asarray(h, dtype=np.float64) for h, _ in systems)
    values = []
    for (_, g), part in zip(systems, parts, strict=True):
        got = [rational_reconstruction(private.raw_decrypt(c), public.n) for c in part]
        expected = m * np.linalg.solve(h_total, np.asarray(g, dtype=np.float64)[:, 0])
        assert np.allclose([float(v) for v in got], expected, rtol=1e-9, atol=1e-12)
        values.append(got)
    # they add up to m times the exact model, exactly
    g_total = sum(np.asarray(g, dtype=np.float64)[:, 0] for _, g in systems)
    summed = [sum((v[j] for v in values), Fraction(0)) / m for j in range(d)]
    assert np.allclose([float(v) for v in summed], np.linalg.solve(h_total, g_total), rtol=1e-9)
    # the check column holds: Enc(x_c − λ₀x₀ − Σλ_i x_i − τ) decrypts to 0
    nu = check_vector(solution, secret.weights, secret.shift, public)
    assert [private.raw_decrypt(c) for c in nu] == [0] * d


def test_the_buyer_sees_only_uniform_values(keys) -> None:
    public, _ = keys
    buyer, _, _, _, _ = _solve(keys, _terms())
    for _, values in buyer.decrypted:
        assert min(min(v, public.n - v) for v in values) > public.n >> 64


def test_a_wrong_column_fails_the_check(keys) -> None:
    """A buyer moving value between two trainers' parts (the sum, the model, unchanged)."""
    public, private = keys
    terms = _terms()
    _, solution, _, secret, _ = _solve(keys, terms)
    width = len(terms) + 2
    nsq = public.nsquare
    moved = list(solution)
    shift = public.raw_encrypt(12345)
    moved[1] = moved[1] * shift % nsq  # trainer 1's first coordinate + ε
    moved[2] = moved[2] * pow(shift, -1, nsq) % nsq  # trainer 2's − ε
    assert width > 2
    nu = check_vector(moved, secret.weights, secret.shift, public)
    assert any(private.raw_decrypt(c) != 0 for c in nu)


def test_the_digest_names_the_unmasking_values() -> None:
    base = mask_digest([3, 5], [[7, 11], [13, 17]])
    assert base == mask_digest([3, 5], [[7, 11], [13, 17]])
    assert base != mask_digest([3, 5], [[7, 11], [13, 18]])
    assert base != mask_digest([3, 6], [[7, 11], [13, 17]])
