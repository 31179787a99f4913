"""The mixing steps: rotations that keep norms and Gram matrices, their growth, who remixes."""

from __future__ import annotations

import numpy as np
import pytest

from deltaml.crypto import EncryptedVector, PlainMatrix, PrivateKey, PublicKey, generate_keypair
from deltaml.errors import DeltaMLValueError
from deltaml.learning.contributions import contribution_remixer, mix_columns, remix_columns
from deltaml.learning.metrics import (
    haar_orthogonal,
    metric_remixer,
    mix_residual_vectors,
    remix_vector,
    rotation_growth_bits,
)

PRECISION = 32


@pytest.fixture(scope="module")
def keys() -> tuple[PublicKey, PrivateKey]:
    return generate_keypair(512, allow_test_keys=True)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 12, 24, 25, 64, 130])
def test_rotation_growth_bounds_every_encoded_rotation(size: int) -> None:
    rng = np.random.default_rng(size)
    for _ in range(5):
        rotation = PlainMatrix.encode(haar_orthogonal(size, rng), PRECISION)
        assert rotation.max_abs_row_sum().bit_length() <= rotation_growth_bits(size, PRECISION)
    with pytest.raises(DeltaMLValueError):
        rotation_growth_bits(0, PRECISION)


def test_mix_then_remix_keeps_the_norm_and_adds_one_precision_each(
    keys: tuple[PublicKey, PrivateKey],
) -> None:
    pk, sk = keys
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal(6), rng.standard_normal(6)]
    vectors = [EncryptedVector.encrypt(pk, b, 40) for b in blocks]
    mixed = mix_residual_vectors(vectors, PRECISION, np.random.default_rng(1))
    remixed = remix_vector(mixed, PRECISION, np.random.default_rng(2))
    assert (mixed.exponent, remixed.exponent) == (40 + PRECISION, 40 + 2 * PRECISION)
    assert len(remixed) == 12
    total = sum(float(b @ b) for b in blocks)
    for vector in (mixed, remixed):
        values = vector.decrypt(sk)
        assert float(values @ values) == pytest.approx(total, rel=1e-8)
    # Another rotation: the remix is not the mix (and its ciphertexts are fresh).
    assert not np.allclose(remixed.decrypt(sk), mixed.decrypt(sk), atol=1e-3)
    assert not set(remixed.ciphertexts) & set(mixed.ciphertexts)
    assert remixed.bound.bit_length() <= mixed.bound.bit_length() + rotation_growth_bits(
        12, PRECISION
    )


def test_remixed_columns_keep_their_gram_matrix(keys: tuple[PublicKey, PrivateKey]) -> None:
    pk, sk = keys
    rng = np.random.default_rng(3)
    own = [rng.standard_normal((5, 4)), rng.standard_normal((5, 4))]  # two validators, 4 columns
    blocks = [[EncryptedVector.encrypt(pk, y[:, j], 40) for j in range(4)] for y in own]
    mixed = mix_columns(blocks, PRECISION, np.random.default_rng(4))
    remixed = remix_columns(mixed, PRECISION, np.random.default_rng(5))
    y = np.column_stack([c.decrypt(sk) for c in remixed])
    expected = sum(b.T @ b for b in own)
    np.testing.assert_allclose(y.T @ y, expected, rtol=1e-7, atol=1e-7)
    assert {c.exponent for c in remixed} == {40 + 2 * PRECISION}
    with pytest.raises(DeltaMLValueError):
        remix_columns([], PRECISION, rng)
    with pytest.raises(DeltaMLValueError):
        remix_columns([remixed[0], remixed[1].split([9, 1])[0]], PRECISION, rng)


def test_the_metric_remixer_rotates_through_the_validators_by_evaluation() -> None:
    validators = ["a", "b", "c"]
    assert [metric_remixer(validators, k) for k in range(7)] == list("abcabca")
    # Every third round and the last (round 10): evaluations 0, 1, 2, 3, 4.
    evaluated = [0, 3, 6, 9, 10]
    assert [metric_remixer(validators, k, 3) for k in evaluated] == list("abcab")
    assert [metric_remixer(["a", "b"], k, 2) for k in (0, 2, 4, 6)] == list("abab")
    assert metric_remixer(["only"], 5) == "only"
    with pytest.raises(DeltaMLValueError):
        metric_remixer(validators, 1, 0)


def test_the_contribution_remixer_is_the_first_validator() -> None:
    assert contribution_remixer(["a", "b", "c"]) == "a"
    assert contribution_remixer(["only"]) == "only"
