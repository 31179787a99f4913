"""The aggregator's side of the exact route (``solver: exact``; the steps:
:mod:`deltaml.roles.exact`): the masks, the sums, the buyer's solve, the unmasking, the
exact model's metric, each trainer's part with contributions (:mod:`.exact_parts`) and
the split — all before the model is delivered.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, TypeVar

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.errors import ProtocolError
from deltaml.evidence.signatures import vector_digest, vector_ref
from deltaml.learning.exact_parts import PartsSecret, draw_parts, model_columns
from deltaml.learning.exact_solve import (
    EncryptedSystem,
    Mask,
    draw_factors,
    mask_determinant,
    masked_length,
    precision_for,
    random_check,
    random_mask,
    residual,
    split_masked,
    sum_ciphertexts,
    unmask,
    zero_sum_shares,
)
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
from deltaml.roles.exact import _hex, columns_for, extra_for
from deltaml.roles.exact_parts import check_digests, checked_parts, with_parts

if TYPE_CHECKING:
    from deltaml.roles.aggregator import Aggregator, TrainingRecord

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=m.Message)


def residuals(agg: Aggregator, w_mod: list[int], u: list[int]) -> tuple[list[int], list[int]]:
    """``Enc(H)·w − Enc(g)`` and ``Enc(LHD)·u − Enc(Lg)`` from the run's sealed sums:
    deterministic, what a verifier recomputes from a disclosure."""
    system_total, masked_total, p, k, extra = agg._exact_sums  # type: ignore[attr-defined]
    key, d = system_total.public_key, len(w_mod) // k
    flat = [int(c) for c in system_total.ciphertexts]
    system = EncryptedSystem(
        tuple(tuple(flat[i * d : (i + 1) * d]) for i in range(d)), tuple(flat[d * d :]), p
    )
    solve, _ = split_masked([int(c) for c in masked_total.ciphertexts], d, k, extra)
    masked = EncryptedSystem(solve.matrix, model_columns(solve.vector, k, extra), p)
    return list(residual(system, w_mod, key)), list(residual(masked, u, key))


def _expect(reply: m.Message, kind: type[_M]) -> _M:
    if not isinstance(reply, kind):
        raise ProtocolError(f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply


def exact_total(enc_w: EncryptedVector, multiplier: int) -> EncryptedVector:
    """``Enc(m·w)``: what the validators evaluate as they evaluate a round's total."""
    return enc_w.mul_int(multiplier)


def _evaluate_exact(
    agg: Aggregator,
    spec: m.TrainingSpec,
    record: TrainingRecord,
    enc_w: EncryptedVector,
    parts: tuple[ExactSolution, Mask, PartsSecret] | None = None,
) -> None:
    """The exact model's metric as round :data:`EXACT_ROUND`, the contributions from
    each trainer's part ``Enc(m·u_i)`` when asked for, then the payment split.

    The validators evaluate ``Enc(m·w)`` as they evaluate a round's total (their
    residuals, mixed and remixed as usual, are then residues ``z/δ``); the buyer raises
    the remixed vector to ``|det(H)|``, a multiple of ``δ``, and decrypts the integers
    packed, with proofs, publishing that determinant (see docs/exactness.md). With
    ``parts`` (the solution, the mask and the parts' secret) the buyer proves the check
    column, the aggregator unmasks the parts, and they go through the rounds'
    contributions protocol as its members' models, raised to the same determinant."""
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
    if parts is not None:  # the parts' check and unmasking are the contributions' work
        with agg.clock.phase(record, "contributions"):
            members = checked_parts(agg, *parts, multiplier)
            record.contributions = agg._contributions(
                members, record.validators, spec.precision_bits
            )
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
    extra = extra_for(spec, len(trainers))
    secret = draw_parts(public_key, d, len(trainers)) if extra else None
    shares = zero_sum_shares(public_key, len(trainers), masked_length(d, k, extra))
    unmask_factors = draw_factors(public_key, d * k)
    record.setup_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    rows = _hex(v for row in mask.matrix for v in row)
    requests = [
        ExactRequest(public_key, p, rows, _hex(mask.scale), _hex(check), _hex(share))
        for share in shares
    ]
    if secret is not None:
        requests = with_parts(requests, secret)
    replies = agg.transport.request_all(list(zip(trainers, requests, strict=True)))
    systems, masked, checks = [], [], []
    for oid, reply in zip(trainers, replies, strict=True):
        three = _expect(reply, ExactReply)
        systems.append(ev.accept(oid, three.system, ExactSystem, sealed=True))
        masked.append(ev.accept(oid, three.masked, ExactMasked, sealed=True))
        checks.append(ev.accept(oid, three.check, ExactCheck, sealed=True))
    for s, v, c in zip(systems, masked, checks, strict=True):
        if not (
            len(s.system) == d * d + d * k
            and len(v.masked) == d * d + d * (k + extra)
            and len(c.check) == d + k
        ):
            raise ProtocolError("a trainer's exact system does not fit the model")
    if secret is not None:
        check_digests(trainers, masked, mask, secret)
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
            extra_columns=extra,
        ),
        sealed=[system_total, masked_total],
    )
    mask_det = f"{mask_determinant(mask, public_key.n):x}"
    request = ExactSolveRequest(tuple(trainers), tuple(masked), d, mask_det)
    solution = ev.accept(
        agg.buyer_id, agg.transport.request(agg.buyer_id, request), ExactSolution, sealed=True
    )
    if solution.masked_digest != vector_digest(masked_total) or len(solution.solution) != d * (
        k + extra
    ):
        raise ProtocolError("the buyer solved another system")
    enc_u = list(model_columns([int(c) for c in solution.solution.ciphertexts], k, extra))
    enc_w = ring_vector(public_key, unmask(enc_u, mask, public_key, unmask_factors))
    agg._exact_sums = (system_total, masked_total, p, k, extra)  # type: ignore[attr-defined]
    ev.record(
        records.ExactModel(solution=vector_digest(solution.solution), model=vector_ref(enc_w)),
        sealed=[enc_w],
    )
    record.training_seconds = time.perf_counter() - t1
    if metrics:  # evaluated and split before the buyer has the model, as in the rounds
        parts = (solution, mask, secret) if secret is not None else None
        _evaluate_exact(agg, spec, record, enc_w, parts)
    delivery = ExactModel(enc_w, tuple(trainers), tuple(checks))
    _expect(agg.transport.request(agg.buyer_id, delivery), m.Ack)
    record.transcript_head = ev.head
    log.info("exact solve done: %d trainers, %d weights", len(trainers), d)
    return record
