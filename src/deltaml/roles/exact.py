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

Not yet in this route: metrics of the final model, contributions and settlement (see
docs/exactness.md); the request spec refuses ``contributions`` and ``target_improvement``
with ``solver: exact``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import gmpy2

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.errors import ProtocolError
from deltaml.evidence.published import denominator_scaled
from deltaml.evidence.signatures import hex_ints, key_id, sign_body, vector_digest, vector_ref
from deltaml.learning.exact_solve import (
    EncryptedSystem,
    ExactBuyer,
    Mask,
    TrainerMask,
    columns_of,
    draw_factors,
    encrypt_system,
    mask_determinant,
    masked_length,
    precision_for,
    random_check,
    random_mask,
    residual,
    split_masked,
    sum_ciphertexts,
    system_factor_count,
    trainer_masked_system,
    unmask,
    zero_sum_shares,
)
from deltaml.learning.models import QuadraticTerms
from deltaml.protocol import messages as m
from deltaml.protocol import records
from deltaml.protocol.exact_messages import (
    ExactCheck,
    ExactMasked,
    ExactModel,
    ExactReply,
    ExactRequest,
    ExactSolution,
    ExactSolveRequest,
    ExactSystem,
    ring_vector,
)
from deltaml.protocol.rules import EXACT_ROUND
from deltaml.roles.evidence import sign_message

if TYPE_CHECKING:
    from deltaml.roles.aggregator import Aggregator, TrainingRecord
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


def trainer_factors(public_key: PublicKey, d: int, columns: int = 1) -> list[gmpy2.mpz]:
    """What a trainer draws at set-up: the randomizers of its messages."""
    return draw_factors(public_key, system_factor_count(d, columns) + masked_length(d, columns))


def trainer_reply(
    msg: ExactRequest, terms: QuadraticTerms, sign: Sign[Any], factors: list[gmpy2.mpz]
) -> ExactReply:
    """A trainer's ``ExactSystem``, ``ExactMasked`` and ``ExactCheck``, signed (uses up
    ``factors``)."""
    key, d, k = msg.public_key, len(terms.linear), columns_of(terms)
    n = key.n
    if not (len(msg.matrix) == d * d and len(msg.scale) == len(msg.check) == d):
        raise ProtocolError("the exact mask does not fit the model")
    if len(msg.share) != masked_length(d, k) or msg.precision_bits != precision_for(
        key.key_bits, d
    ):
        raise ProtocolError("the exact request's share or precision does not fit the model")
    flat = _ints(msg.matrix, n, "mask")
    mask = Mask(
        tuple(tuple(flat[i * d : (i + 1) * d]) for i in range(d)),
        tuple(_ints(msg.scale, n, "scale")),
    )
    tm = TrainerMask(mask, tuple(_ints(msg.check, n, "check")), tuple(_ints(msg.share, n, "share")))
    if len(factors) != system_factor_count(d, k) + masked_length(d, k):
        # One answer per set-up: a second request (another mask, say) gets nothing.
        raise ProtocolError("no exact request expected now: answered already, or no set-up")
    split = system_factor_count(d, k)
    system = encrypt_system(terms, key, msg.precision_bits, factors[:split])
    masked = trainer_masked_system(terms, key, msg.precision_bits, tm, factors[split:])
    factors.clear()  # randomizers are used once
    flat_system = [c for row in system.hessian for c in row] + list(system.linear)
    return ExactReply(
        sign(ExactSystem(ring_vector(key, flat_system)), key),
        sign(ExactMasked(ring_vector(key, masked[: d * d + d * k])), key),
        sign(ExactCheck(ring_vector(key, masked[d * d + d * k :])), key),
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

    def solve(self, msg: ExactSolveRequest) -> ExactSolution:
        buyer, key = self.buyer, self.buyer.public_key
        seats = buyer._seated()
        if self._d:
            raise ProtocolError("the masked system was already solved: one solve per request")
        if list(msg.trainers) != seats.trainer_ids or len(msg.masked) != len(msg.trainers):
            raise ProtocolError("the masked system is not the seated trainers'")
        d, k = msg.n_weights, self._columns
        if buyer.stats is None or d != len(buyer.stats.means) + 1:
            raise ProtocolError("the masked system does not fit the published statistics")
        for party, masked in zip(msg.trainers, msg.masked, strict=True):
            buyer._check_signed(masked, party, seats.owners())
            if len(masked.masked) != d * d + d * k or masked.masked.public_key != key:
                raise ProtocolError(f"the masked vector of {party} does not fit the model")
        total = sum_ciphertexts([[int(c) for c in v.masked.ciphertexts] for v in msg.masked], key)
        solve_part, _ = split_masked(total, d, k)
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

    def scaled(self, vector: EncryptedVector) -> tuple[EncryptedVector, int]:
        """The exact model's remixed residual vector raised to ``det(H)``: residues
        ``z/δ`` become integers, decrypted packed like any metric vector (the magnitude
        bound at the exponent ``e + bits(det H)``); and ``det(H)``."""
        if not self.denominator:
            raise ProtocolError("no exact solve to evaluate yet")
        key = self.buyer.public_key
        cts, exponent = denominator_scaled(
            [int(c) for c in vector.ciphertexts], vector.exponent, self.denominator, key.nsquare
        )
        scaled = EncryptedVector(key, [gmpy2.mpz(c) for c in cts], exponent, 0)
        return scaled, self.denominator

    def opened(self) -> tuple[list[int], list[int]]:
        """``w`` and ``u`` mod n, as the buyer would disclose them."""
        dec = self.buyer._private_key.raw_decrypt
        return [dec(c) for c in self.encrypted_w], [dec(c) for c in self.encrypted_u]

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
            ("solution", self.encrypted_u),
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
    solve per request) and ``|det(H)|`` for the exact model's metric."""
    holder = getattr(buyer, "_exact_holder", None)
    if holder is None or not holder._d:
        return {}
    return {"exact": {"n_weights": holder._d, "denominator": f"{holder.denominator:x}"}}


def restore_holder(buyer: ModelBuyer, snapshot: Mapping[str, Any]) -> None:
    saved = snapshot.get("exact")
    if isinstance(saved, dict):
        holder = key_holder(buyer)
        holder._d, holder.denominator = int(saved["n_weights"]), int(saved["denominator"], 16)


# -- the aggregator ----------------------------------------------------------------------
def residuals(agg: Aggregator, w_mod: list[int], u: list[int]) -> tuple[list[int], list[int]]:
    """``Enc(H)·w − Enc(g)`` and ``Enc(LHD)·u − Enc(Lg)`` from the run's sealed sums:
    deterministic, what a verifier recomputes from a disclosure."""
    system_total, masked_total, p, k = agg._exact_sums  # type: ignore[attr-defined]
    key, d = system_total.public_key, len(w_mod) // k
    flat = [int(c) for c in system_total.ciphertexts]
    system = EncryptedSystem(
        tuple(tuple(flat[i * d : (i + 1) * d]) for i in range(d)), tuple(flat[d * d :]), p
    )
    solve, _ = split_masked([int(c) for c in masked_total.ciphertexts], d, k)
    masked = EncryptedSystem(solve.matrix, solve.vector, p)
    return list(residual(system, w_mod, key)), list(residual(masked, u, key))


def _expect(reply: m.Message, kind: type[_M]) -> _M:
    if not isinstance(reply, kind):
        raise ProtocolError(f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply


def exact_total(enc_w: EncryptedVector, multiplier: int) -> EncryptedVector:
    """``Enc(m·w)``: what the validators evaluate as they evaluate a round's total."""
    return enc_w.mul_int(multiplier)


def _evaluate_exact(
    agg: Aggregator, spec: m.TrainingSpec, record: TrainingRecord, enc_w: EncryptedVector
) -> None:
    """The exact model's metric as round :data:`EXACT_ROUND`, then the payment split.

    The validators evaluate ``Enc(m·w)`` as they evaluate a round's total (their
    residuals, mixed and remixed as usual, are then residues ``z/δ``); the buyer raises
    the remixed vector to ``|det(H)|``, a multiple of ``δ``, and decrypts the integers
    packed, with proofs, publishing that determinant (see docs/exactness.md)."""
    from deltaml.roles.training_state import RoundRecord

    t0 = time.perf_counter()
    multiplier = len(record.trainers)
    total = exact_total(enc_w, multiplier)
    agg.evidence.record(
        records.ExactTotal(
            model=vector_digest(enc_w), multiplier=multiplier, total=vector_ref(total)
        ),
        sealed=[total],
    )
    with agg.clock.phase(record, "metrics"):
        metric = agg._evaluate(EXACT_ROUND, total, record.validators, spec)
    record.rounds.append(RoundRecord(EXACT_ROUND, time.perf_counter() - t0, metric=metric))
    agg._settle(spec, record)


def train_exact(
    agg: Aggregator,
    spec: m.TrainingSpec,
    public_key: PublicKey,
    initial_model: EncryptedVector,
    n_features: int,
    include_target: bool,
) -> TrainingRecord:
    """The aggregator's side of the exact route (``Aggregator.train`` with ``solver: exact``)."""
    from deltaml.protocol.rules import split_roles
    from deltaml.roles.training_state import TrainingRecord

    t0 = time.perf_counter()
    trainers, validators = split_roles(agg.owner_ids, spec.trainer_fraction, spec.split_seed)
    record = TrainingRecord(trainers, validators, spec.split_seed)
    ev = agg._ev = agg._recorder(public_key)
    ev.record(agg._header(spec, public_key, trainers, validators, n_features))
    k = columns_for(spec)
    stats = agg._standardize(
        public_key, spec.base_exponent, n_features, include_target, spec.n_classes, spec.impute
    )
    agg.transport.request_all(
        [
            (oid, m.Setup("trainer" if oid in trainers else "validator", spec, stats,
                          public_key, len(trainers), initial_model))
            for oid in trainers + validators
        ]
    )  # fmt: skip
    metrics = not spec.n_classes  # no encrypted metric of several classes yet
    if metrics:  # the initial model's metric, as the iterative protocol's set-up has it
        total0 = initial_model.mul_int(len(trainers))
        ev.record(
            records.InitialTotal(
                model=vector_ref(initial_model), multiplier=len(trainers), total=vector_ref(total0)
            ),
            public=[initial_model, total0],
        )
        with agg.clock.phase(record, "metrics"):
            record.initial_metric = agg._evaluate(0, total0, validators, spec)
    d = n_features + 1
    p = precision_for(public_key.key_bits, d)
    mask, check = random_mask(public_key, d), random_check(public_key, d)
    shares = zero_sum_shares(public_key, len(trainers), masked_length(d, k))
    unmask_factors = draw_factors(public_key, d * k)
    record.setup_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    rows = _hex(v for row in mask.matrix for v in row)
    requests = [
        ExactRequest(public_key, p, rows, _hex(mask.scale), _hex(check), _hex(share))
        for share in shares
    ]
    replies = agg.transport.request_all(list(zip(trainers, requests, strict=True)))
    systems, masked, checks = [], [], []
    for oid, reply in zip(trainers, replies, strict=True):
        three = _expect(reply, ExactReply)
        systems.append(ev.accept(oid, three.system, ExactSystem, sealed=True))
        masked.append(ev.accept(oid, three.masked, ExactMasked, sealed=True))
        checks.append(ev.accept(oid, three.check, ExactCheck, sealed=True))
    for s, v, c in zip(systems, masked, checks, strict=True):
        if not (len(s.system) == len(v.masked) == d * d + d * k and len(c.check) == d + k):
            raise ProtocolError("a trainer's exact system does not fit the model")
    system_total = ring_vector(
        public_key,
        sum_ciphertexts([[int(c) for c in s.system.ciphertexts] for s in systems], public_key),
    )
    masked_total = ring_vector(
        public_key,
        sum_ciphertexts([[int(c) for c in v.masked.ciphertexts] for v in masked], public_key),
    )
    ev.record(
        records.ExactSums(
            precision_bits=p,
            systems=[vector_digest(s.system) for s in systems],
            masked=[vector_digest(v.masked) for v in masked],
            checks=[vector_digest(c.check) for c in checks],
            system_total=vector_ref(system_total),
            masked_total=vector_ref(masked_total),
        ),
        sealed=[system_total, masked_total],
    )
    mask_det = f"{mask_determinant(mask, public_key.n):x}"
    request = ExactSolveRequest(tuple(trainers), tuple(masked), d, mask_det)
    solution = ev.accept(
        agg.buyer_id, agg.transport.request(agg.buyer_id, request), ExactSolution, sealed=True
    )
    if solution.masked_digest != vector_digest(masked_total) or len(solution.solution) != d * k:
        raise ProtocolError("the buyer solved another system")
    enc_u = [int(c) for c in solution.solution.ciphertexts]
    enc_w = ring_vector(public_key, unmask(enc_u, mask, public_key, unmask_factors))
    agg._exact_sums = (system_total, masked_total, p, k)  # type: ignore[attr-defined]
    ev.record(
        records.ExactModel(solution=vector_digest(solution.solution), model=vector_ref(enc_w)),
        sealed=[enc_w],
    )
    record.training_seconds = time.perf_counter() - t1
    if metrics:  # evaluated and split before the buyer has the model, as in the rounds
        _evaluate_exact(agg, spec, record, enc_w)
    delivery = ExactModel(enc_w, tuple(trainers), tuple(checks))
    _expect(agg.transport.request(agg.buyer_id, delivery), m.Ack)
    record.transcript_head = ev.head
    log.info("exact solve done: %d trainers, %d weights", len(trainers), d)
    return record
