"""The aggregator's side of the exact route (``solver: exact``; the steps:
:mod:`deltaml.roles.exact`): the masks, the sums, the buyer's solve, the unmasking, the
exact model's metric, each trainer's part with contributions (:mod:`.exact_parts`) and
the split — all before the model is delivered; checkpointed so that a restarted
aggregator goes on after the buyer's solution (:mod:`.exact_checkpoint`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.errors import ProtocolError
from deltaml.evidence.signatures import vector_digest, vector_ref
from deltaml.learning.exact_parts import draw_parts, model_columns
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
from deltaml.roles.exact_checkpoint import (
    ASKED,
    CHECKED,
    MEASURED,
    NOT_RESUMABLE,
    SOLVED,
    VALUED,
    ExactCheckpoint,
)
from deltaml.roles.exact_parts import check_digests, checked_parts, with_parts

if TYPE_CHECKING:
    from deltaml.roles.aggregator import Aggregator, Checkpoint, TrainingRecord

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=m.Message)
#: Called with the exact route's state at each stage (the service saves it).
SaveCheckpoint = Callable[[ExactCheckpoint], None]


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


def _save(
    agg: Aggregator, cp: ExactCheckpoint, stage: str, checkpoint: SaveCheckpoint | None
) -> None:
    """``cp`` is now at ``stage``, with the transcript where it ends: hand it to ``checkpoint``."""
    cp.stage = stage
    cp.transcript_head, cp.transcript_count = agg.evidence.head, agg.evidence.writer.count
    cp.rotation_openings = dict(agg.rotation_openings)
    if checkpoint is not None:
        checkpoint(cp)


def _evaluate_exact(
    agg: Aggregator,
    spec: m.TrainingSpec,
    cp: ExactCheckpoint,
    checkpoint: SaveCheckpoint | None = None,
) -> None:
    """The exact model's metric as round :data:`EXACT_ROUND`, the contributions from
    each trainer's part ``Enc(m·u_i)`` when asked for, then the payment split — each
    step from the stage ``cp`` is at, saved after it.

    The validators evaluate ``Enc(m·w)`` as they evaluate a round's total (their
    residuals, mixed and remixed as usual, are then residues ``z/δ``); the buyer raises
    the remixed vector to ``|det(H)|``, a multiple of ``δ``, and decrypts the integers
    packed, with proofs, publishing that determinant (see docs/exactness.md). With
    the parts' secret the buyer proves the check column, the aggregator unmasks the
    parts, and they go through the rounds' contributions protocol as its members'
    models, raised to the same determinant."""
    from deltaml.roles.training_state import RoundRecord

    record, multiplier = cp.record, len(cp.record.trainers)
    assert cp.model is not None
    if cp.stage == SOLVED:
        t0 = time.perf_counter()
        total = exact_total(cp.model, multiplier)
        agg.evidence.record(
            records.ExactTotal(
                model=vector_digest(cp.model), multiplier=multiplier, total=vector_ref(total)
            ),
            sealed=[total],
        )
        with agg.clock.phase(record, "metrics"):
            trainers = len(record.trainers)
            metric = agg._evaluate(EXACT_ROUND, total, record.validators, spec, trainers)
        record.rounds.append(RoundRecord(EXACT_ROUND, time.perf_counter() - t0, metric=metric))
        _save(agg, cp, MEASURED, checkpoint)
    if cp.secret is not None:
        assert cp.solution is not None and cp.mask is not None
        if cp.stage == MEASURED:  # the parts' check and unmasking: the contributions' work
            with agg.clock.phase(record, "contributions"):
                cp.parts = tuple(checked_parts(agg, cp.solution, cp.mask, cp.secret, multiplier))
            _save(agg, cp, CHECKED, checkpoint)
        if cp.stage == CHECKED:
            with agg.clock.phase(record, "contributions"):
                record.contributions = agg._contributions(list(cp.parts), record.validators, spec)
            _save(agg, cp, VALUED, checkpoint)
    agg._settle(spec, record)


def _resume(
    agg: Aggregator, cp: ExactCheckpoint | Checkpoint, public_key: PublicKey
) -> ExactCheckpoint:
    """Take up the exact route where ``cp`` left it, with the transcript where it ended."""
    if not isinstance(cp, ExactCheckpoint):
        raise ProtocolError("the saved checkpoint is the rounds', not the exact solve's")
    if cp.stage == ASKED:
        raise ProtocolError(NOT_RESUMABLE)
    agg.rotation_openings = dict(cp.rotation_openings)
    agg._ev = agg._recorder(public_key)
    if agg._ev.head != cp.transcript_head:
        raise ProtocolError("the transcript does not end where the checkpoint does")
    log.info("resuming the exact solve after its %r stage", cp.stage)
    return cp


def train_exact(
    agg: Aggregator,
    spec: m.TrainingSpec,
    public_key: PublicKey,
    initial_model: EncryptedVector,
    n_features: int,
    include_target: bool,
    *,
    checkpoint: SaveCheckpoint | None = None,
    resume: ExactCheckpoint | Checkpoint | None = None,
) -> TrainingRecord:
    """The aggregator's side of the exact route (``Aggregator.train`` with ``solver: exact``).

    ``checkpoint`` is called with an :class:`ExactCheckpoint` before the trainers are
    asked and after each step from the buyer's solution on; passing the last one back as
    ``resume`` (the transcript writer reopened where it ended) goes on from there
    without asking a trainer or the buyer again for what they answered — or, saved
    before the buyer's solution, fails with one line (:data:`NOT_RESUMABLE`)."""
    if resume is None:
        cp = _solve(agg, spec, public_key, initial_model, n_features, include_target, checkpoint)
    else:
        cp = _resume(agg, resume, public_key)
    record = cp.record
    assert cp.model is not None
    agg._exact_sums = cp.sums  # type: ignore[attr-defined]  # for residuals (a disclosure)
    if not spec.n_classes:  # evaluated and split before the buyer has the model, as in the rounds
        _evaluate_exact(agg, spec, cp, checkpoint)
    delivery = ExactModel(cp.model, tuple(record.trainers), cp.checks)
    _expect(agg.transport.request(agg.buyer_id, delivery), m.Ack)
    record.transcript_head = agg.evidence.head
    log.info("exact solve done: %d trainers, %d weights", len(record.trainers), len(cp.model))
    return record


def _solve(
    agg: Aggregator,
    spec: m.TrainingSpec,
    public_key: PublicKey,
    initial_model: EncryptedVector,
    n_features: int,
    include_target: bool,
    checkpoint: SaveCheckpoint | None,
) -> ExactCheckpoint:
    """Set-up, the initial model's metric, the trainers' systems, the buyer's solve and
    the unmasking: the ``solved`` checkpoint."""
    from deltaml.protocol.rules import split_roles
    from deltaml.roles.training_state import TrainingRecord

    trainers, validators = split_roles(agg.owner_ids, spec.trainer_fraction, spec.split_seed)
    record = TrainingRecord(trainers, validators, spec.split_seed)
    # Wall and CPU time (central / owners) of the set-up and of the solve, as the
    # rounds' phases are booked.
    with agg.clock.phase(record, "setup"):
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
    # The initial model's metric, as the iterative protocol's set-up has it (no encrypted
    # metric of several classes yet).
    if not spec.n_classes:
        agg._initial_metric(record, initial_model, validators, spec)
    with agg.clock.phase(record, "setup"):  # the mask and randomizers
        d = n_features + 1
        p = precision_for(public_key.key_bits, d)
        mask, check = random_mask(public_key, d), random_check(public_key, d)
        extra = extra_for(spec, len(trainers))
        secret = draw_parts(public_key, d, len(trainers)) if extra else None
        shares = zero_sum_shares(public_key, len(trainers), masked_length(d, k, extra))
        unmask_factors = draw_factors(public_key, d * k)
    # Saved before anything is asked that is answered once: a restart from here fails.
    cp = ExactCheckpoint(ASKED, record, {}, "", 0)
    _save(agg, cp, ASKED, checkpoint)

    with agg.clock.phase(record, "training"):
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
        ev.record(
            records.ExactModel(solution=vector_digest(solution.solution), model=vector_ref(enc_w)),
            sealed=[enc_w],
        )
    cp.model, cp.checks, cp.solution = enc_w, tuple(checks), solution
    cp.sums = (system_total, masked_total, p, k, extra)
    if secret is not None:  # the parts' unmasking needs D and the parts' secret, not L
        cp.mask, cp.secret = Mask((), mask.scale), secret
    _save(agg, cp, SOLVED, checkpoint)
    return cp
