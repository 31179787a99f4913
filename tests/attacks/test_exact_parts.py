"""Attacks on the trainers' parts of the exact model (``solver: exact`` with
``contributions``; the construction: learning/exact_parts.py), which set how the
trainers' pool is split.

- a buyer that moves value from one trainer's part to another's (the model, the sum of
  the parts, unchanged): the hidden check column fails; the aggregator refuses its proof,
  and ``deltaml verify`` recomputes the check from the sealed solution;
- an aggregator that moves value between two parts when it unmasks them (offsets shifted
  with their sum kept): verify recomputes every part from the sealed ``D`` and offsets —
  and if it keeps the shifted offsets instead, they are not the ones the trainers signed;
- an aggregator asking the trainers of a request without contributions for parts (more
  right-hand sides than the request names): refused by the trainers;
- the check asked twice (a decryption oracle): refused.

Each test was run with its defence removed (the aggregator's ``proves_zero`` returning
True; ``check_solve_check``'s and ``check_parts``' expectations removed; the trainer's
layout check in ``trainer_parts`` removed; the buyer's answer-once guard removed) and
failed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from deltaml.errors import ProtocolError
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.simulation import SimulationConfig, SimulationResult, simulate_shares

CONFIG = SimulationConfig(
    solver="exact", key_bits=1024, allow_test_keys=True, chain=False, contributions=True
)


def _run(config: SimulationConfig = CONFIG, wrap: Any = None) -> SimulationResult:
    train, test = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, 6, seed=0)
    return simulate_shares(
        config,
        "linear",
        "regression",
        shares,
        test,
        **({"transport_wrapper": wrap} if wrap else {}),
    )


def _failures(result: SimulationResult) -> list[str]:
    assert result.verification is not None
    return [f"{f.check}: {f.detail}" for f in result.verification.failures]


def _buyer_moves_value(monkeypatch: pytest.MonkeyPatch, knows_scale: bool = False) -> None:
    """The buyer moves value from trainer 2's part to trainer 1's (first weight) and
    'proves' its check whatever it decrypts to. Not knowing ``D``, its shift unmasks to a
    uniform residue; ``knows_scale``: told ``D₀`` (as if by the aggregator), it moves
    exactly one unit, which every later step takes for a small number."""
    from deltaml.learning import exact_solve
    from deltaml.roles import exact, exact_aggregator

    solve = exact_solve.ExactBuyer.solve_masked
    draw_mask = exact_aggregator.random_mask
    told: dict[str, Any] = {}

    def mask_told(key: Any, d: int) -> Any:
        told["mask"] = draw_mask(key, d)
        return told["mask"]

    def moved(self: Any, masked: Any) -> tuple[int, ...]:
        out = list(solve(self, masked))
        n, nsq = self.public_key.n, self.public_key.nsquare
        step = pow(told["mask"].scale[0], -1, n) if knows_scale else 1
        shift = self.public_key.raw_encrypt(step)
        out[1] = out[1] * shift % nsq
        out[2] = out[2] * pow(shift, -1, nsq) % nsq
        return tuple(out)

    monkeypatch.setattr(exact_aggregator, "random_mask", mask_told)

    def proves_anything(self: Any, msg: Any) -> Any:
        from deltaml.learning.exact_parts import check_vector
        from deltaml.roles.evidence import sign_message

        key = self.buyer.public_key
        weights = [int(v, 16) for v in msg.weights]
        shift = [int(v, 16) for v in msg.shift]
        randomness = [
            self.buyer._private_key.decrypt_with_randomness(c)[1]
            for c in check_vector(self.encrypted_u, weights, shift, key)
        ]
        reply = exact.ExactSolveCheck(
            exact.vector_digest(exact.ring_vector(key, self.encrypted_u)),
            msg.weights,
            msg.shift,
            tuple(f"{r:x}" for r in randomness),
        )
        return sign_message(reply, self.buyer.account, key)

    monkeypatch.setattr(exact_solve.ExactBuyer, "solve_masked", moved)
    monkeypatch.setattr(exact.ExactKeyHolder, "check_parts", proves_anything)


def test_a_buyer_moving_value_between_two_parts_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _buyer_moves_value(monkeypatch)
    with pytest.raises(ProtocolError, match="fails its check column"):
        _run()


def test_verify_recomputes_the_check_of_the_buyers_solution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A buyer moving exactly one unit (it was told ``D``), and an aggregator that does
    not check its proof: the parts stay small numbers, the split moves, verify fails."""
    _buyer_moves_value(monkeypatch, knows_scale=True)
    monkeypatch.setattr("deltaml.roles.exact_parts.proves_zero", lambda *args: True)
    failures = _failures(_run())
    assert any(f.startswith("exact check: the buyer's solution fails") for f in failures)


def _shifted(secret: Any, scale: Any, n: int) -> Any:
    """Offsets that move one unit of the first weight from trainer 1's part to trainer
    2's once unmasked (``−D₀⁻¹`` and ``+D₀⁻¹``): their sum, the model, unchanged, and
    every part still a small number."""
    step = pow(scale[0], -1, n)
    offsets = [list(t) for t in secret.offsets]
    offsets[0][0] = (offsets[0][0] - step) % n
    offsets[1][0] = (offsets[1][0] + step) % n
    return dataclasses.replace(secret, offsets=tuple(tuple(t) for t in offsets))


def test_an_aggregator_moving_value_between_parts_fails_verification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deltaml.roles import exact_parts

    honest = _run()
    real = exact_parts.unmask_parts

    def unmask_shifted(solution: Any, offsets: Any, scale: Any, m: Any, key: Any) -> Any:
        moved = _shifted(exact_parts.PartsSecret(tuple(offsets), (), ()), scale, key.n)
        return real(solution, moved.offsets, scale, m, key)

    monkeypatch.setattr(exact_parts, "unmask_parts", unmask_shifted)
    cheated = _run()
    assert cheated.contributions != pytest.approx(honest.contributions)  # what it was after
    failures = _failures(cheated)
    assert any(f.startswith("exact parts: a trainer's part is not the unmasking") for f in failures)


def test_an_aggregator_keeping_other_offsets_than_it_sent_fails_verification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deltaml.roles import exact_aggregator, exact_parts

    real = exact_parts.checked_parts

    def checked(agg: Any, solution: Any, mask: Any, secret: Any, m: int) -> Any:
        n = solution.solution.public_key.n
        return real(agg, solution, mask, _shifted(secret, mask.scale, n), m)

    monkeypatch.setattr(exact_aggregator, "checked_parts", checked)
    failures = _failures(_run())
    assert any(
        f.startswith("exact parts: the unmasking values are not the ones every trainer signed")
        for f in failures
    )


def test_parts_are_refused_where_the_request_measures_no_contributions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deltaml.learning.exact_parts import extra_columns

    monkeypatch.setattr(
        "deltaml.roles.exact_aggregator.extra_for", lambda spec, trainers: extra_columns(trainers)
    )
    config = dataclasses.replace(CONFIG, contributions=False)
    with pytest.raises(ProtocolError, match="measures no contributions"):
        _run(config)


def test_the_check_is_answered_once() -> None:
    from deltaml.protocol.exact_messages import ExactCheckRequest
    from deltaml.roles.exact import key_holder

    held: dict[str, Any] = {}

    def wrap(inner: Any) -> Any:
        held["inner"] = inner
        return inner

    _run(wrap=wrap)
    holder = key_holder(held["inner"]._parties["buyer"])
    again = ExactCheckRequest(("1",) * holder._extra, ("0",) * holder._d)
    with pytest.raises(ProtocolError, match="checked already"):
        holder.check_parts(again)
