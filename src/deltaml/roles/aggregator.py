"""The federated aggregator: orchestrates the rounds and adds ciphertexts it cannot read."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from deltaml.crypto import EncryptedVector, PublicKey, needs_refresh
from deltaml.errors import DeltaMLValueError, PartyTimeout, ProtocolError
from deltaml.protocol import messages as m
from deltaml.protocol.rules import is_evaluated, last_round
from deltaml.protocol.rules import split_roles as split_roles  # a public rule
from deltaml.roles.aggregator_base import _expect, _metric_growth
from deltaml.roles.aggregator_base import zero_sum_masks as zero_sum_masks
from deltaml.roles.aggregator_phases import AggregatorPhases
from deltaml.roles.exact_aggregator import train_exact
from deltaml.roles.exact_checkpoint import ExactCheckpoint as ExactCheckpoint
from deltaml.roles.forms import MaskHolder
from deltaml.roles.training_state import Checkpoint as Checkpoint
from deltaml.roles.training_state import ProgressCallback as ProgressCallback
from deltaml.roles.training_state import RoundRecord as RoundRecord
from deltaml.roles.training_state import TrainingRecord as TrainingRecord

log = logging.getLogger(__name__)


class Aggregator(AggregatorPhases):
    """Runs one training request over a :class:`~deltaml.transport.Transport`.

    It holds the encrypted sum ``t = Σ s_i`` and sees nothing but ciphertexts,
    public statistics and the published metrics.

    Evidence: every signed reply is checked against ``addresses`` (party id → the
    Ethereum address it registered; no checks without them) and recorded, with the
    aggregator's own signed records, in ``transcript`` (a hash-only transcript when
    none is given). See :mod:`deltaml.evidence.transcript` for what is recorded
    where. The seeds of its secret mixing rotations are kept, with their salts, in
    ``rotation_openings``: the transcript holds only commitments to them.

    What it mixes goes to a second mixer before the buyer: the validator the public
    rule names (:func:`~deltaml.learning.metrics.metric_remixer`,
    :func:`~deltaml.learning.contributions.contribution_remixer`) rotates it again with
    a secret rotation of its own, so the aggregator, which knows its own rotation and
    reads the published plaintexts, cannot undo the mixing (see
    :mod:`deltaml.learning.metrics`). A single validator remixes too: the buyer
    decrypts only a seated owner's signed output (the remix, the owners' summed
    statistics, a trainer's masked state), passed on with its signature, so the
    aggregator cannot use it as a decryption oracle.
    """

    def train(
        self,
        spec: m.TrainingSpec,
        public_key: PublicKey,
        initial_model: EncryptedVector,
        n_features: int,
        include_target: bool,
        progress: ProgressCallback | None = None,
        *,
        checkpoint: Callable[[Checkpoint | ExactCheckpoint], None] | None = None,
        resume: Checkpoint | ExactCheckpoint | None = None,
    ) -> TrainingRecord:
        """Run ``spec`` to the end and return what the aggregator may keep.

        ``checkpoint`` is called with the whole training state after the set-up and
        after each round; passing the last one back as ``resume`` (with the
        transcript writer reopened where it ended, :meth:`TranscriptWriter.reopen`)
        continues from there to the same final model: a data owner asked a round
        again recomputes it from the state it kept. (``solver: exact``: an
        :class:`ExactCheckpoint` at each stage, see :func:`train_exact`.)
        """
        _check_train_args(spec, initial_model, n_features)
        # metric_protocol gram: Enc(H) is collected afresh by each run (and after a
        # restart); the contributions' vectors need the initial model.
        self._gram, self._initial_model = None, initial_model
        self.form_holder, self.gram_holders = MaskHolder(), set()
        if spec.solver == "exact":  # one masked solve instead of rounds (roles/exact.py)
            return train_exact(
                self, spec, public_key, initial_model, n_features, include_target,
                checkpoint=checkpoint, resume=resume,
            )  # fmt: skip
        if isinstance(resume, ExactCheckpoint):
            raise ProtocolError("the saved checkpoint is the exact solve's, not the rounds'")
        if resume is None:
            cp = self._set_up(spec, public_key, initial_model, n_features, include_target)
            if checkpoint is not None:
                checkpoint(cp)
        else:
            cp = self._resume(resume, public_key)
        record = cp.record
        for k in range(cp.round + 1, spec.rounds + 1):
            if last_round(spec.rounds, spec.target_improvement, record.published) < k:
                log.info("the target improvement was reached at round %d", k - 1)
                break
            rec = self._train_round(k, cp, spec)
            if checkpoint is not None:
                checkpoint(cp)
            if progress is not None:
                progress(rec)
        if spec.contributions:
            self._measure_contributions(cp, spec)
        rounds = record.rounds[-1].round
        # Sealed: the public transcript names the final model by its digest only, so
        # nobody (the buyer included) reads the model from it before settlement.
        final = self._broadcast(rounds, "final", cp.total, sealed=True)
        _expect(
            self.transport.request(self.buyer_id, m.FinalModel(final, len(record.active), rounds)),
            m.Ack,
        )
        self._settle(spec, record)
        record.transcript_head = self.evidence.head
        return record

    def _resume(self, cp: Checkpoint, public_key: PublicKey) -> Checkpoint:
        """Take up the training state ``cp`` left, with the transcript where it ended."""
        self.rotation_openings = dict(cp.rotation_openings)
        self._ev = self._recorder(public_key)
        if self._ev.head != cp.transcript_head:
            raise ProtocolError("the transcript does not end where the checkpoint does")
        log.info("resuming after round %d", cp.round)
        return cp

    def _train_round(self, k: int, cp: Checkpoint, spec: m.TrainingSpec) -> RoundRecord:
        """Round ``k`` (retried without the trainers that fall silent), its metric if
        evaluated, and the checkpoint moved past it."""
        record, ev = cp.record, self.evidence
        r0 = time.perf_counter()
        forced = False
        with self.clock.phase(record, "training"):
            while True:
                try:
                    states, total, refreshed = self._round(k, cp, spec.base_exponent, forced)
                    break
                except PartyTimeout as silent:
                    self._drop(k, silent, cp, spec)
                    # The states carry over; a refresh re-bases them all before the retry.
                    forced = True
        if k == 1:
            cp.first_updates = dict(states)
        rec = RoundRecord(k, 0.0, refreshed)
        if is_evaluated(k, spec.rounds, spec.eval_every):
            with self.clock.phase(record, "metrics"):
                rec.metric = self._evaluate(k, total, record.validators, spec, len(record.active))
        rec.seconds = time.perf_counter() - r0
        record.rounds.append(rec)
        cp.round, cp.states, cp.total = k, states, total
        cp.transcript_head, cp.transcript_count = ev.head, ev.writer.count
        cp.rotation_openings = dict(self.rotation_openings)
        return rec

    def _measure_contributions(self, cp: Checkpoint, spec: m.TrainingSpec) -> None:
        """Each trainer's Shapley value from its round-one update, into the record."""
        record = cp.record
        active = record.active
        with self.clock.phase(record, "contributions"):
            values = self._contributions(
                [cp.first_updates[t] for t in active], record.validators, spec
            )
        # A dropped trainer's model is not in the result: it is measured as nothing.
        by_trainer = dict(zip(active, values, strict=True))
        record.contributions = [by_trainer.get(t, 0.0) for t in record.trainers]

    def _round(
        self, k: int, cp: Checkpoint, base_exponent: int, force_refresh: bool
    ) -> tuple[dict[str, EncryptedVector], EncryptedVector, bool]:
        """One round from the checkpoint's states: (a refresh,) the broadcast, the sum."""
        trainers = cp.record.active
        states, total = cp.states, cp.total
        refreshed = force_refresh or any(
            needs_refresh(v, cp.next_growth) for v in (total, *states.values())
        )
        if refreshed:
            states = self._refresh(k, trainers, base_exponent)
            total = self._sum(k, "refresh", trainers, states)
            cp.record.refreshes += 1
        # A sum of ciphertexts is a function of what the trainers sent: re-randomize
        # it before it leaves, like everything else.
        outgoing = self._broadcast(k, "round", total, sealed=True)
        replies = self.transport.request_all(
            [(oid, m.RoundRequest(k, outgoing)) for oid in trainers]
        )
        states = self._accept_states(k, "round", trainers, replies, [outgoing] * len(trainers))
        return states, self._sum(k, "round", trainers, states), refreshed

    def _set_up(
        self,
        spec: m.TrainingSpec,
        public_key: PublicKey,
        initial_model: EncryptedVector,
        n_features: int,
        include_target: bool,
    ) -> Checkpoint:
        """Roles, standardization, the owners' set-up and the initial model's metric."""
        trainers, validators = split_roles(self.owner_ids, spec.trainer_fraction, spec.split_seed)
        record = TrainingRecord(trainers, validators, spec.split_seed)
        log.info(
            "split: %d trainers, %d validators (seed %d)",
            len(trainers),
            len(validators),
            spec.split_seed,
        )
        with self.clock.phase(record, "setup"):
            ev = self._ev = self._recorder(public_key)
            ev.record(self._header(spec, public_key, trainers, validators, n_features))

            stats = self._standardize(
                public_key, spec.base_exponent, n_features, include_target, impute=spec.impute
            )
            setups = self.transport.request_all(
                [
                    (
                        oid,
                        m.Setup(
                            "trainer" if oid in trainers else "validator",
                            spec,
                            stats,
                            public_key,
                            len(trainers),
                            initial_model,
                        ),
                    )
                    for oid in trainers + validators
                ]
            )
            growth = max(_expect(r, m.SetupDone).growth_bits for r in setups[: len(trainers)])
            metric_growth = _metric_growth(spec.precision_bits, len(validators), n_features)
            next_growth = growth + max(len(trainers), 1).bit_length() + metric_growth

            states = {oid: initial_model for oid in trainers}
        total = self._initial_metric(record, initial_model, validators, spec)
        return Checkpoint(
            round=0,
            record=record,
            states=states,
            total=total,
            first_updates={},
            next_growth=next_growth,
            rotation_openings=dict(self.rotation_openings),
            transcript_head=ev.head,
            transcript_count=ev.writer.count,
        )


def _check_train_args(
    spec: m.TrainingSpec, initial_model: EncryptedVector, n_features: int
) -> None:
    if spec.rounds < 1:
        raise DeltaMLValueError("rounds must be at least 1")
    if spec.eval_every < 1:
        raise DeltaMLValueError("eval_every must be at least 1")
    if not 0 <= spec.target_improvement < 100:
        raise DeltaMLValueError("target_improvement must be at least 0 and below 100 %")
    if len(initial_model) != n_features + 1:
        raise DeltaMLValueError("the initial model needs one weight per feature plus the intercept")
