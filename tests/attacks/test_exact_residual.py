"""Attacks on the exact solve (``solver: exact``) that only its residual checks catch.

- an aggregator that unmasks wrongly, or masks some trainers' systems differently (a
  substituted system): the model does not solve ``H·w = g``. The buyer's own check
  ``(Hc)ᵀw = cᵀg`` refuses it; and once the buyer discloses the model (as a dispute
  does), ``deltaml verify``'s public residual check fails on the *model* residual
  while the solve residual is zero — the aggregator's fault;
- a buyer that returns a wrong ``Enc(u)`` (and would then dispute the result): the
  public check fails on the *solve* residual — the buyer's fault;
- an aggregator that asks the buyer to solve again (a decryption oracle), or a trainer
  to answer again (under another mask): refused.

Each test was run with the defence reverted (the model-residual ``expect`` and the
solve-residual ``require`` of ``evidence/checks/exact.check_disclosure`` removed, the
buyer's check skipped, and the buyer's and the trainer's answer-once guards removed)
and failed.
"""

from __future__ import annotations

from typing import Any

import gmpy2
import numpy as np
import pytest

from deltaml.errors import DeltaMLValueError
from deltaml.learning import exact_solve
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.simulation import SimulationConfig, simulate_shares

CONFIG = SimulationConfig(
    solver="exact",
    key_bits=1024,
    allow_test_keys=True,
    chain=False,
    contributions=False,
    disclose_model=True,
)


def _run() -> Any:
    train, test = train_test_split(load_dataset("diabetes"), 0.2, 0)
    return simulate_shares(CONFIG, "linear", "regression", split_owners(train, 5, seed=0), test)


def _buyer_accepts_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    """The buyer skips its own check, and keeps even a model it cannot read (a buyer that
    means to dispute), so the model reaches the transcript and its disclosure."""
    final = exact_solve.ExactBuyer.final_weights

    def unchecked(self: Any, encrypted_w: Any, check: Any = None, columns: int = 1) -> Any:
        try:
            return final(self, encrypted_w, None, columns)
        except DeltaMLValueError:  # not a small rational: not the exact optimum
            return np.zeros(len(encrypted_w)), ()

    monkeypatch.setattr(exact_solve.ExactBuyer, "final_weights", unchecked)


def _wrong_unmasking(monkeypatch: pytest.MonkeyPatch) -> None:
    real = exact_solve.unmask

    def off_by_one(encrypted_u: Any, mask: Any, public_key: Any, factors: Any = None) -> Any:
        out = list(real(encrypted_u, mask, public_key, factors))
        nsq = public_key.nsquare
        out[0] = int(gmpy2.mpz(out[0]) * (1 + public_key.n) % nsq)  # w_0 + 1
        return tuple(out)

    monkeypatch.setattr("deltaml.roles.exact_aggregator.unmask", off_by_one)


def _failures(result: Any) -> list[str]:
    assert result.verification is not None
    return [f"{f.check}: {f.detail}" for f in result.verification.failures]


def test_the_buyer_refuses_a_wrongly_unmasked_model(monkeypatch: pytest.MonkeyPatch) -> None:
    _wrong_unmasking(monkeypatch)
    with pytest.raises(DeltaMLValueError, match="fails its check"):
        _run()


def test_verify_catches_a_wrongly_unmasked_model(monkeypatch: pytest.MonkeyPatch) -> None:
    _wrong_unmasking(monkeypatch)
    _buyer_accepts_anything(monkeypatch)
    failures = _failures(_run())
    assert any(f.startswith("exact residual: the model does not solve") for f in failures)
    assert not any("Enc(u)" in f for f in failures)  # not the buyer's fault


def test_verify_catches_a_substituted_system(monkeypatch: pytest.MonkeyPatch) -> None:
    """The aggregator scales one trainer's share of the system: ``D`` differs for it."""
    real = exact_solve.masked_residues
    calls = {"n": 0}

    def substituted(h: Any, g: Any, tm: Any, n: int) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the second trainer gets another D
            scale = tuple(v * 2 % n for v in tm.mask.scale)
            tm = exact_solve.TrainerMask(
                exact_solve.Mask(tm.mask.matrix, scale), tm.check, tm.share
            )
        return real(h, g, tm, n)

    monkeypatch.setattr(exact_solve, "masked_residues", substituted)
    _buyer_accepts_anything(monkeypatch)
    failures = _failures(_run())
    assert any(f.startswith("exact residual: the model does not solve") for f in failures)


def _wrong_solution(monkeypatch: pytest.MonkeyPatch) -> None:
    """The buyer returns ``Enc(u)`` with ``u_1 + 1``."""
    real = exact_solve.ExactBuyer.solve_masked

    def wrong(self: Any, masked: Any) -> tuple[int, ...]:
        out = list(real(self, masked))
        key = self.public_key
        out[1] = int(gmpy2.mpz(out[1]) * (1 + key.n) % key.nsquare)  # u_1 + 1
        return tuple(out)

    monkeypatch.setattr(exact_solve.ExactBuyer, "solve_masked", wrong)


def test_verify_blames_a_buyer_that_returns_a_wrong_solution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _wrong_solution(monkeypatch)
    _buyer_accepts_anything(monkeypatch)
    # A wrong model's residuals are no small integers: the exact model's metric, before
    # delivery, already stops this run (the packed decryption refuses them). Without the
    # metric, here is what verify says of the solve itself.
    from deltaml.roles import exact_aggregator as exact

    monkeypatch.setattr(exact, "_evaluate_exact", lambda *args: None)
    failures = _failures(_run())
    assert any(
        f.startswith("exact residual: the buyer's solution does not solve") for f in failures
    )


def test_a_wrong_solution_stops_the_run_at_the_exact_models_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deltaml.errors import ProtocolError

    _wrong_solution(monkeypatch)
    with pytest.raises(ProtocolError, match="refusing to publish a packed decryption"):
        _run()


def test_the_buyer_solves_once_per_request() -> None:
    """An aggregator cannot use the buyer as a decryption oracle by asking again (say,
    with trainers it asked a second time under another mask)."""
    from deltaml.errors import ProtocolError
    from deltaml.protocol.exact_messages import ExactSolveRequest
    from deltaml.roles.exact import key_holder
    from deltaml.transport import RecordingTransport

    held: dict[str, Any] = {}

    def wrap(inner: Any) -> RecordingTransport:
        held["inner"], held["recorder"] = inner, RecordingTransport(inner)
        return held["recorder"]

    train, test = train_test_split(load_dataset("diabetes"), 0.2, 0)
    simulate_shares(
        CONFIG, "linear", "regression", split_owners(train, 5, seed=0), test, None, wrap
    )
    request = next(
        msg for msg in held["recorder"].received_by("buyer") if isinstance(msg, ExactSolveRequest)
    )
    with pytest.raises(ProtocolError, match="already solved"):
        key_holder(held["inner"]._parties["buyer"]).solve(request)


def test_a_trainer_answers_once_per_set_up() -> None:
    """An aggregator that asks a trainer again (under another mask, say) gets nothing."""
    from deltaml.errors import ProtocolError
    from deltaml.protocol.exact_messages import ExactRequest
    from deltaml.transport import RecordingTransport

    held: dict[str, Any] = {}

    def wrap(inner: Any) -> RecordingTransport:
        held["inner"], held["recorder"] = inner, RecordingTransport(inner)
        return held["recorder"]

    train, test = train_test_split(load_dataset("diabetes"), 0.2, 0)
    simulate_shares(
        CONFIG, "linear", "regression", split_owners(train, 5, seed=0), test, None, wrap
    )
    delivery = next(d for d in held["recorder"].deliveries if isinstance(d.message, ExactRequest))
    with pytest.raises(ProtocolError, match="answered already"):
        held["inner"]._parties[delivery.recipient].handle(delivery.message)
