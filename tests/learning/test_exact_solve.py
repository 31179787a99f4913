"""The one-shot exact solve (issue 14): the optimum to machine precision, and the buyer
decrypts only the masked system (the privacy-recording pattern of tests/roles/test_privacy.py:
everything the key holder decrypts is recorded and checked)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from deltaml.crypto.paillier import generate_keypair
from deltaml.errors import DeltaMLValueError
from deltaml.learning.baseline import exact_optimum, relative_gap, training_objective
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.learning.exact_run import prepare, train
from deltaml.learning.exact_solve import (
    ExactBuyer,
    Mask,
    encrypt_system,
    exact_solve,
    mask_system,
    precision_for,
    random_mask,
    rational_reconstruction,
    residual,
    split_masked,
    sum_systems,
    unmask,
)
from deltaml.learning.models import Standardization, model_type


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024, allow_test_keys=True)


def _diabetes(seed: int):
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, seed)
    shares = split_owners(train, 4, seed=seed)  # the 4 trainers of a 5-owner run
    x, y = train.X, train.y
    stats = Standardization(len(x), x.mean(0), x.std(0), float(y.mean()), float(y.std()))
    model = model_type("linear")
    return model, stats, x, y, [model.local_terms(s.X, s.y, stats) for s in shares]


@pytest.mark.parametrize("seed", [0, 3])
def test_diabetes_reaches_the_optimum(keys, seed: int) -> None:
    public, private = keys
    model, stats, x, y, terms = _diabetes(seed)
    buyer = ExactBuyer(public, private)
    weights, total, w_mod = exact_solve(terms, public, buyer)
    best = exact_optimum(model, stats, x, y)
    gap = relative_gap(training_objective(model, stats, x, y, weights), best.objective)
    assert abs(gap) <= 1e-6
    assert np.max(np.abs(weights - best.weights)) < 1e-6
    # the verifier's check: Enc(H)·w − Enc(g) decrypts to zero
    assert all(private.raw_decrypt(c) == 0 for c in residual(total, w_mod, public))
    # and fails for any other model
    wrong = (w_mod[0] + 1, *w_mod[1:])
    assert any(private.raw_decrypt(c) != 0 for c in residual(total, wrong, public))


def _looks_uniform(values: tuple[int, ...], n: int) -> bool:
    """No value is a small signed integer (a fixed-point H or g entry is below 2^(p+8))."""
    return min(min(v, n - v) for v in values) > n >> 64


def test_the_buyer_decrypts_only_the_masked_system(keys) -> None:
    public, private = keys
    _, _, _, _, terms = _diabetes(0)
    p = precision_for(public.key_bits, len(terms[0].linear))
    total = sum_systems([encrypt_system(t, public, p) for t in terms], public)
    buyer = ExactBuyer(public, private)
    masked, mask = mask_system(total, public)
    enc_u = buyer.solve_masked(masked)
    assert [kind for kind, _ in buyer.decrypted] == ["masked_matrix"] * 11 + ["masked_vector"]
    for _, values in buyer.decrypted:
        assert _looks_uniform(values, public.n)
    # a fresh mask on the same system: every decrypted number changes
    again = ExactBuyer(public, private)
    again.solve_masked(mask_system(total, public)[0])
    for (_, first), (_, second) in zip(buyer.decrypted, again.decrypted, strict=True):
        assert all(a != b for a, b in zip(first, second, strict=True))
    # the aggregator-side variant unmasks to the same exact model as the trainer-side one
    weights, w_mod = buyer.final_weights(unmask(enc_u, mask, public))
    assert all(private.raw_decrypt(c) == 0 for c in residual(total, w_mod, public))
    reference, _, _ = exact_solve(terms, public, ExactBuyer(public, private))
    assert np.array_equal(weights, reference)
    # the check can fail: without the mask (L = I, D = 1) the buyer would see H and g
    d = total.size
    identity = Mask(tuple(tuple(int(i == j) for j in range(d)) for i in range(d)), (1,) * d)
    exposed = ExactBuyer(public, private)
    exposed.solve_masked(mask_system(total, public, identity)[0])
    assert not any(_looks_uniform(values, public.n) for _, values in exposed.decrypted)


def test_trainer_side_masking_shows_the_buyer_only_the_masked_sum(keys) -> None:
    """The protocol as run: trainers mask with the encrypted mask, the aggregator sums."""
    public, private = keys
    _, _, _, _, terms = _diabetes(0)
    d = len(terms[0].linear)
    buyer = ExactBuyer(public, private)
    exact_solve(terms, public, buyer)
    kinds = [kind for kind, _ in buyer.decrypted]
    assert kinds == ["masked_matrix"] * d + ["masked_vector", "final_model", "check"]
    for kind, values in buyer.decrypted:
        if kind != "final_model":
            assert _looks_uniform(values, public.n), kind
    # control: with L = I and D = 1 the same record shows H and g in the clear
    identity = Mask(tuple(tuple(int(i == j) for j in range(d)) for i in range(d)), (1,) * d)
    exposed = ExactBuyer(public, private)
    exact_solve(terms, public, exposed, mask=identity)
    assert not any(_looks_uniform(values, public.n) for _, values in exposed.decrypted[: d + 1])


def test_rational_reconstruction() -> None:
    n = (2**127 - 1) * (2**89 - 1)
    for f in (Fraction(3, 7), Fraction(-123456789, 1000003), Fraction(0)):
        value = f.numerator * pow(f.denominator, -1, n) % n
        assert rational_reconstruction(value, n) == f


def test_simulation_option_reaches_the_optimum_and_its_test_mse() -> None:
    from deltaml.simulation import SimulationConfig, simulate_shares

    config = SimulationConfig(
        solver="exact",
        key_bits=1024,
        allow_test_keys=True,
        chain=False,
        contributions=False,
        seed=3,
    )
    train, test = train_test_split(load_dataset("diabetes"), 0.2, 3)
    shares = split_owners(train, 5, seed=3)
    result = simulate_shares(config, "linear", "regression", shares, test)
    assert len(result.trainers) == 4 and len(result.validators) == 1
    assert abs(result.objective_gap) <= 1e-6
    t = result.test
    assert abs(t["test_mse"] / t["optimum_test_mse"] - 1) <= 1e-6
    assert result.to_json()["rounds"] == 1  # the exact model, evaluated as round 1


def test_simulation_option_is_refused_where_it_does_not_run_yet() -> None:
    from deltaml.errors import DeltaMLValueError
    from deltaml.protocol.spec import SpecError
    from deltaml.simulation import SimulationConfig

    with pytest.raises(SpecError, match="target_improvement"):
        SimulationConfig(solver="exact", target_improvement=5)
    with pytest.raises(DeltaMLValueError, match="--solver"):
        SimulationConfig(solver="newton", chain=False)


def test_several_models_are_solved_together(keys) -> None:
    """``H W = G`` with one column of ``G`` per model (a ``K``-class model): each column
    equals its own one-column solve exactly, the residual is zero, and a wrong entry
    fails both the residual and the buyer's check."""
    public, private = keys
    _, _, _, _, terms = _diabetes(1)
    rng = np.random.default_rng(0)
    columns = [[t.linear, rng.normal(size=len(t.linear)) * 0.1, -t.linear] for t in terms]
    wide = [
        type(t)(t.hessian, np.column_stack(cols), t.constant)
        for t, cols in zip(terms, columns, strict=True)
    ]
    weights, total, w_mod = exact_solve(wide, public, ExactBuyer(public, private))
    assert weights.shape == (len(terms[0].linear), 3) and total.columns == 3
    for k in range(3):
        alone = [
            type(t)(t.hessian, cols[k], t.constant) for t, cols in zip(terms, columns, strict=True)
        ]
        single, _, _ = exact_solve(alone, public, ExactBuyer(public, private))
        assert np.array_equal(weights[:, k], single)
    assert all(private.raw_decrypt(c) == 0 for c in residual(total, w_mod, public))
    wrong = list(w_mod)
    wrong[4] = (wrong[4] + 1) % public.n  # row 1, column 1
    assert any(private.raw_decrypt(c) != 0 for c in residual(total, wrong, public))
    # The buyer's own check (the summed check part of the same run) refuses it too.
    prep = prepare(public, len(terms[0].linear), len(wide), columns=3)
    out = train(wide, public, ExactBuyer(public, private), prep)
    _, check_part = split_masked(out.masked_sum, out.total.size, 3)
    encrypted = [int(public.raw_encrypt(v)) for v in wrong]
    with pytest.raises(DeltaMLValueError, match="fails its check"):
        ExactBuyer(public, private).final_weights(encrypted, check_part, 3)


def test_the_buyer_has_det_h_from_the_masked_system_and_the_masks_determinant(keys) -> None:
    """``det(M) / (det(L)·det(D)) = det(H)`` mod n: a multiple of the model's denominator
    the buyer has before the model (docs/exactness.md, the exact model's metric)."""
    from deltaml.learning.exact_solve import det_mod, mask_determinant

    public, _ = keys
    n = public.n
    h = [[4, 1, 0], [1, 3, 1], [0, 1, 2]]
    assert det_mod(h, n) == round(np.linalg.det(np.array(h, dtype=float)))  # 18
    assert det_mod([[0, 1], [1, 0]], n) == n - 1  # a row swap changes the sign
    mask = random_mask(public, 3)
    left = [list(row) for row in mask.matrix]
    lh = [[sum(left[i][k] * h[k][j] for k in range(3)) % n for j in range(3)] for i in range(3)]
    masked = [[lh[i][j] * mask.scale[j] % n for j in range(3)] for i in range(3)]
    assert det_mod(masked, n) * pow(mask_determinant(mask, n), -1, n) % n == 18
