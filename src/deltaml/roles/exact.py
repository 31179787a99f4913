"""The exact solve in the protocol run (``solver: exact``; docs/exactness.md).

The same seats, header and federated standardization as the iterative protocol; then,
instead of rounds, one masked solve (:mod:`deltaml.learning.exact_solve`):

1. at set-up each trainer draws the randomizers of its two messages (data-independent);
2. the aggregator sends each trainer an :class:`ExactRequest` (its mask ``L, D``, the
   check vector ``c``, the trainer's zero-sum share); each trainer replies with its
   signed ``Enc(H_i), Enc(g_i)`` (:class:`ExactSystem`), its signed masked solve part
   (:class:`ExactMasked`) and check part (:class:`ExactCheck`), all sealed;
3. the aggregator records the sums (``ExactSums``, recomputable) and passes every
   trainer's signed masked vector to the buyer, which checks the signatures against the
   seats, sums them itself, decrypts only the sum's solve part and returns a signed
   ``Enc(u)`` (:class:`ExactSolution`);
4. the aggregator unmasks ``Enc(w)`` (``ExactModel`` record, sealed) and hands it to the
   buyer with the trainers' signed check parts; the buyer sums those, decrypts, checks
   ``(Hc)ᵀw = cᵀg``, and only then keeps the model.

Then the validators evaluate ``Enc(m·w)`` as round :data:`EXACT_ROUND`, the buyer having
``|det H|`` to read it, and the split is recorded before the model is delivered. With
``contributions`` the same solve also yields each trainer's part of the model (extra
columns, a hidden check column; :mod:`deltaml.roles.exact_parts`), valued like the
rounds' round-one models. ``target_improvement`` has no meaning here and is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import gmpy2

from deltaml.crypto import PublicKey
from deltaml.errors import ProtocolError
from deltaml.evidence.signatures import hex_ints, key_id, sign_body, vector_digest
from deltaml.learning.exact_parts import (
    TrainerParts,
    check_vector,
    extra_columns,
    mask_digest,
    model_columns,
)
from deltaml.learning.exact_solve import (
    ExactBuyer,
    Mask,
    TrainerMask,
    columns_of,
    draw_factors,
    encrypt_system,
    masked_length,
    precision_for,
    split_masked,
    sum_ciphertexts,
    system_factor_count,
    trainer_masked_system,
)
from deltaml.learning.models import QuadraticTerms
from deltaml.protocol import messages as m
from deltaml.protocol import records
from deltaml.protocol.exact_messages import (
    ExactCheck,
    ExactCheckRequest,
    ExactMasked,
    ExactModel,
    ExactReply,
    ExactRequest,
    ExactSolution,
    ExactSolveCheck,
    ExactSolveRequest,
    ExactSystem,
    ring_vector,
)
from deltaml.roles.evidence import sign_message

if TYPE_CHECKING:
    from deltaml.roles.buyer import ModelBuyer

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=m.Message)
Sign = Callable[[_M, PublicKey], _M]


def _hex(values: Any) -> tuple[str, ...]:
    return tuple(hex_ints(list(values)))


def _ints(values: tuple[str, ...], n: int, what: str) -> list[int]:
    try:
        out = [int(v, 16) for v in values]
    except ValueError:
        raise ProtocolError(f"malformed {what}") from None
    if any(not 0 <= v < n for v in out):
        raise ProtocolError(f"{what} out of range")
    return out


# -- the trainer -------------------------------------------------------------------------
def columns_for(spec: m.TrainingSpec) -> int:
    """Models solved together: one, or one per class (:mod:`deltaml.learning.lda`)."""
    return max(1, spec.n_classes)


def extra_for(spec: m.TrainingSpec, trainers: int) -> int:
    """Right-hand sides beyond the models': each trainer's part and the check column when
    the request measures contributions (:mod:`deltaml.learning.exact_parts`), else none."""
    return extra_columns(trainers) if spec.contributions else 0


def trainer_factors(
    public_key: PublicKey, d: int, columns: int = 1, extra: int = 0
) -> list[gmpy2.mpz]:
    """What a trainer draws at set-up: the randomizers of its messages."""
    return draw_factors(
        public_key, system_factor_count(d, columns) + masked_length(d, columns, extra)
    )


def trainer_reply(
    msg: ExactRequest,
    terms: QuadraticTerms,
    sign: Sign[Any],
    factors: list[gmpy2.mpz],
    extra: int = 0,
) -> ExactReply:
    """A trainer's ``ExactSystem``, ``ExactMasked`` and ``ExactCheck``, signed (uses up
    ``factors``). ``extra``: the parts' columns its own spec asks for (0: none)."""
    key, d, k = msg.public_key, len(terms.linear), columns_of(terms)
    n = key.n
    if not (len(msg.matrix) == d * d and len(msg.scale) == len(msg.check) == d):
        raise ProtocolError("the exact mask does not fit the model")
    parts = trainer_parts(msg, d, extra)
    if len(msg.share) != masked_length(d, k, extra) or msg.precision_bits != precision_for(
        key.key_bits, d
    ):
        raise ProtocolError("the exact request's share or precision does not fit the model")
    flat = _ints(msg.matrix, n, "mask")
    mask = Mask(
        tuple(tuple(flat[i * d : (i + 1) * d]) for i in range(d)),
        tuple(_ints(msg.scale, n, "scale")),
    )
    tm = TrainerMask(
        mask, tuple(_ints(msg.check, n, "check")), tuple(_ints(msg.share, n, "share")), parts
    )
    if len(factors) != system_factor_count(d, k) + masked_length(d, k, extra):
        # One answer per set-up: a second request (another mask, say) gets nothing.
        raise ProtocolError("no exact request expected now: answered already, or no set-up")
    split = system_factor_count(d, k)
    system = encrypt_system(terms, key, msg.precision_bits, factors[:split])
    masked = trainer_masked_system(terms, key, msg.precision_bits, tm, factors[split:])
    factors.clear()  # randomizers are used once
    flat_system = [c for row in system.hessian for c in row] + list(system.linear)
    solve = d * d + d * (k + extra)
    digest = "" if parts is None else mask_digest(mask.scale, parts.offsets)
    return ExactReply(
        sign(ExactSystem(ring_vector(key, flat_system)), key),
        sign(ExactMasked(ring_vector(key, masked[:solve]), digest), key),
        sign(ExactCheck(ring_vector(key, masked[solve:])), key),
    )


def trainer_parts(msg: ExactRequest, d: int, extra: int) -> TrainerParts | None:
    """The parts' values of an exact request, in the layout this trainer's spec names:
    none without contributions, every trainer's offsets with them."""
    n = msg.public_key.n
    if not extra:
        if msg.offsets or msg.sigma or msg.coefficient or msg.index != -1:
            raise ProtocolError("this request measures no contributions: no parts to solve")
        return None
    trainers = extra - 1
    if not (len(msg.offsets) == trainers * d and len(msg.sigma) == d and 0 <= msg.index < trainers):
        raise ProtocolError("the parts' offsets do not fit the seated trainers")
    flat = _ints(msg.offsets, n, "offsets")
    (coefficient,) = _ints((msg.coefficient,), n, "check coefficient")
    return TrainerParts(
        tuple(tuple(flat[i * d : (i + 1) * d]) for i in range(trainers)),
        tuple(_ints(msg.sigma, n, "sigma")),
        coefficient,
        msg.index,
    )


# -- the buyer ---------------------------------------------------------------------------
class ExactKeyHolder:
    """The buyer's part: decrypts only the seated trainers' summed, masked system."""

    def __init__(self, buyer: ModelBuyer, solver: ExactBuyer) -> None:
        self.buyer = buyer
        self.solver = solver
        self._d = 0
        self._columns = columns_for(buyer.spec)
        #: ``Enc(u)`` it returned and ``Enc(w)`` it received (for a disclosure).
        self.encrypted_u: tuple[int, ...] = ()
        self.encrypted_w: tuple[int, ...] = ()
        #: ``|det(H)|`` of the trainers' integer system, a multiple of the model's common
        #: denominator (``w = a/δ``): known from the solve, before the model arrives.
        self.denominator = 0
        #: The parts' extra columns of its solve (contributions), and whether it has
        #: answered their check.
        self._extra = 0
        self.checked = False

    def solve(self, msg: ExactSolveRequest) -> ExactSolution:
        buyer, key = self.buyer, self.buyer.public_key
        seats = buyer._seated()
        if self._d:
            raise ProtocolError("the masked system was already solved: one solve per request")
        if list(msg.trainers) != seats.trainer_ids or len(msg.masked) != len(msg.trainers):
            raise ProtocolError("the masked system is not the seated trainers'")
        d, k = msg.n_weights, self._columns
        # The parts' columns only in the layout its own request names (contributions).
        extra = self._extra = extra_for(buyer.spec, len(msg.trainers))
        if buyer.stats is None or d != len(buyer.stats.means) + 1:
            raise ProtocolError("the masked system does not fit the published statistics")
        for party, masked in zip(msg.trainers, msg.masked, strict=True):
            buyer._check_signed(masked, party, seats.owners())
            if len(masked.masked) != d * d + d * (k + extra) or masked.masked.public_key != key:
                raise ProtocolError(f"the masked vector of {party} does not fit the model")
        total = sum_ciphertexts([[int(c) for c in v.masked.ciphertexts] for v in msg.masked], key)
        solve_part, _ = split_masked(total, d, k, extra)
        self._d = d
        enc_u = self.encrypted_u = self.solver.solve_masked(solve_part)
        self.denominator = _det_h(self.solver.masked_det, msg.mask_det, key.n)
        reply = ExactSolution(ring_vector(key, enc_u), vector_digest(ring_vector(key, total)))
        return sign_message(reply, buyer.account, key)

    def model(self, msg: ExactModel) -> m.Ack:
        k = self._columns
        if not self._d or self.encrypted_w or len(msg.model) != self._d * k:
            raise ProtocolError("no exact solve to receive a model for")
        seats = self.buyer._seated()
        if list(msg.trainers) != seats.trainer_ids or len(msg.checks) != len(msg.trainers):
            raise ProtocolError("the check part is not the seated trainers'")
        for party, check in zip(msg.trainers, msg.checks, strict=True):
            self.buyer._check_signed(check, party, seats.owners())
            if len(check.check) != self._d + k:
                raise ProtocolError(f"the check part of {party} does not fit the model")
        key = self.buyer.public_key
        check_sum = sum_ciphertexts(
            [[int(c) for c in v.check.ciphertexts] for v in msg.checks], key
        )
        self.encrypted_w = tuple(int(c) for c in msg.model.ciphertexts)
        weights, _ = self.solver.final_weights(self.encrypted_w, check_sum, k)
        assert self.buyer.stats is not None
        self.buyer.weights = self.buyer.model.finish(weights, self.buyer.stats)
        return m.Ack("exact model received and checked")

    def evaluation_denominator(self) -> int:
        """``|det(H)|``, a multiple of the model's denominator ``δ``: the exact model's
        metric vector (and its parts' columns) are residues ``z/δ``, decrypted as the
        integers ``Δz/δ`` packed at the exponent ``e + bits(Δ)``."""
        if not self.denominator:
            raise ProtocolError("no exact solve to evaluate yet")
        return self.denominator

    def model_columns(self) -> tuple[int, ...]:
        """``Enc(u)`` of the models' columns of its solution (not the parts')."""
        return model_columns(self.encrypted_u, self._columns, self._extra)

    def check_parts(self, msg: ExactCheckRequest) -> ExactSolveCheck:
        """Prove the check column of its solution holds for the weights and shift the
        aggregator reveals now (:mod:`deltaml.learning.exact_parts`): once, and only
        for a solve with parts."""
        key = self.buyer.public_key
        if not self._extra or self.checked:
            raise ProtocolError("no solve with parts to check, or checked already")
        if len(msg.weights) != self._extra or len(msg.shift) != self._d:
            raise ProtocolError("the check's weights and shift do not fit the solve")
        weights, shift = _ints(msg.weights, key.n, "weights"), _ints(msg.shift, key.n, "shift")
        self.checked = True
        opened = [
            self.buyer._private_key.decrypt_with_randomness(c)
            for c in check_vector(self.encrypted_u, weights, shift, key)
        ]
        if any(value for value, _ in opened):
            raise ProtocolError("the solution's check column does not hold for these weights")
        reply = ExactSolveCheck(
            vector_digest(ring_vector(key, self.encrypted_u)),
            msg.weights,
            msg.shift,
            _hex(r for _, r in opened),
        )
        return sign_message(reply, self.buyer.account, key)

    def opened(self) -> tuple[list[int], list[int]]:
        """``w`` and ``u`` mod n, as the buyer would disclose them (the models' columns
        only: a part's column with its offset would tell the aggregator that part)."""
        dec = self.buyer._private_key.raw_decrypt
        return [dec(c) for c in self.encrypted_w], [dec(c) for c in self.model_columns()]

    def disclose(
        self, model_residual: list[int], solve_residual: list[int]
    ) -> tuple[dict[str, Any], str]:
        """The buyer publishes its model (to dispute a result, say): ``w`` and ``u`` with
        proofs, and proofs of what the two residuals decrypt to (anyone computes their
        ciphertexts from the sealed sums and ``w``, ``u``; see evidence/checks/exact.py).
        Returns the signed body and its signature."""
        key, private = self.buyer.public_key, self.buyer._private_key
        fields: dict[str, list[str]] = {}
        for name, cts in (
            ("model", self.encrypted_w),
            ("solution", self.model_columns()),
            ("model_residual", model_residual),
            ("solve_residual", solve_residual),
        ):
            opened = [private.decrypt_with_randomness(c) for c in cts]
            fields[name] = hex_ints([mv for mv, _ in opened])
            fields[name + "_randomness"] = hex_ints([r for _, r in opened])
        rec = records.ExactDisclosure(**fields)
        body = {"kind": rec.KIND, "key": key_id(key), **rec.to_body()}
        return body, sign_body(self.buyer.account, body)


def _det_h(masked_det: int, mask_det: str, n: int) -> int:
    """``|det(H)|`` from ``det(M) = det(L)·det(H)·det(D)`` and the aggregator's
    ``det(L)·det(D)``: an integer below ``2^{pd}`` (``det H ≤ 1`` in real units), read
    as the signed residue. A wrong ``det(L)·det(D)`` gives a residue no evaluation can
    use (the packed decryption refuses its values), never a wrong metric."""
    try:
        mask = int(mask_det, 16) % n
        det = masked_det * pow(mask, -1, n) % n
    except (ValueError, ZeroDivisionError):
        raise ProtocolError("the masked system's determinant does not fit its mask") from None
    det = det - n if det > n // 2 else det
    if det == 0:
        raise ProtocolError("the masked system's determinant does not fit its mask")
    return abs(det)


def key_holder(buyer: ModelBuyer) -> ExactKeyHolder:
    """The buyer's exact-solve state (made on first use)."""
    holder = getattr(buyer, "_exact_holder", None)
    if holder is None:
        holder = ExactKeyHolder(buyer, ExactBuyer(buyer.public_key, buyer._private_key))
        buyer._exact_holder = holder  # type: ignore[attr-defined]
    return holder


def holder_snapshot(buyer: ModelBuyer) -> dict[str, object]:
    """The exact solve's state a buyer node keeps across a restart: that it solved (one
    solve per request), ``|det(H)|`` for the exact model's metric and, with parts, its
    encrypted solution and whether it answered the parts' check."""
    holder = getattr(buyer, "_exact_holder", None)
    if holder is None or not holder._d:
        return {}
    state: dict[str, object] = {
        "n_weights": holder._d,
        "denominator": f"{holder.denominator:x}",
    }
    if holder._extra:
        state |= {
            "extra": holder._extra,
            "checked": holder.checked,
            "solution": list(_hex(holder.encrypted_u)),
        }
    return {"exact": state}


def restore_holder(buyer: ModelBuyer, snapshot: Mapping[str, Any]) -> None:
    saved = snapshot.get("exact")
    if isinstance(saved, dict):
        holder = key_holder(buyer)
        holder._d, holder.denominator = int(saved["n_weights"]), int(saved["denominator"], 16)
        holder._extra, holder.checked = int(saved.get("extra", 0)), bool(saved.get("checked"))
        holder.encrypted_u = tuple(int(v, 16) for v in saved.get("solution", ()))
