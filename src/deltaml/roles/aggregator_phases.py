"""The aggregator's phases: standardization, refresh, evaluation, contributions, settlement."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.errors import ProtocolError
from deltaml.evidence.published import (
    shapley_seed,
)
from deltaml.evidence.signatures import hex_ints, vector_digest, vector_ref
from deltaml.learning.contributions import (
    contribution_remixer,
    contribution_weights,
    mix_columns,
)
from deltaml.learning.gram_metric import (
    contribution_pairs,
    contribution_vectors,
    encoded_relaxation,
    metric_pairs,
    metric_vector,
)
from deltaml.learning.metrics import metric_remixer, mix_residual_vectors
from deltaml.learning.standardize import sums_length
from deltaml.protocol import messages as m
from deltaml.protocol import records
from deltaml.protocol.form_messages import GramShare
from deltaml.protocol.rules import (
    FORM_CONTRIBUTIONS,
    compute_payouts,
    form_label,
    scale_metric,
)
from deltaml.protocol.rules import split_roles as split_roles  # a public rule
from deltaml.roles.aggregator_base import (
    AggregatorBase,
    _expect,
    _remixed_shape,
    _require,
    zero_sum_masks,
)
from deltaml.roles.forms import collect_gram, evaluate_forms
from deltaml.roles.training_state import TrainingRecord

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=m.Message)


class AggregatorPhases(AggregatorBase):
    """The steps of a training that :class:`~deltaml.roles.aggregator.Aggregator` runs."""

    def _settle(self, spec: m.TrainingSpec, record: TrainingRecord) -> None:
        """The payment split the contract will compute, recorded so that anyone can recompute it."""
        phi = np.asarray(record.contributions, dtype=np.float64)
        # Without measured contributions the trainers still in the run share alike.
        weights = (
            contribution_weights(phi)
            if len(phi)
            else [int(t in record.active) for t in record.trainers]
        )
        assert record.initial_metric is not None
        final = record.rounds[-1].metric
        assert final is not None  # the last round is always evaluated
        initial_scaled, final_scaled = scale_metric(record.initial_metric), scale_metric(final)
        payouts = compute_payouts(
            spec.deposit_wei, initial_scaled, final_scaled, weights, len(record.validators)
        )
        self.evidence.record(
            records.Payouts(
                deposit_wei=spec.deposit_wei,
                initial_round=0,
                final_round=record.rounds[-1].round,
                initial_metric=initial_scaled,
                final_metric=final_scaled,
                trainers=list(record.trainers),
                contribution_weights=weights,
                validators=list(record.validators),
                trainers_wei=list(payouts.trainers),
                validators_wei=list(payouts.validators),
                aggregator_wei=payouts.aggregator,
                refund_wei=payouts.refund,
                **self.evidence.settlement_fields(record.trainers, record.validators),
            )
        )
        record.contribution_weights = weights
        record.payouts = payouts

    # -- protocol steps -----------------------------------------------------------------
    def _contributions(
        self, first_updates: list[EncryptedVector], validators: list[str], spec: m.TrainingSpec
    ) -> list[float]:
        if spec.metric_protocol == "gram":
            return self._gram_contributions(first_updates, validators, spec)
        precision_bits = spec.precision_bits
        ev = self.evidence
        sent = [u.rerandomize_with_exponents() for u in first_updates]
        outgoing = tuple(v for v, _ in sent)
        ev.record(
            records.ContributionRequest(
                sources=[vector_digest(u) for u in first_updates],
                exponents=[hex_ints(e) for _, e in sent],
                outgoing=[vector_ref(v) for v in outgoing],
            ),
            sealed=outgoing,
        )
        digests = tuple(vector_digest(v) for v in outgoing)
        request = m.ContributionRequest(outgoing)
        replies = self.transport.request_all([(oid, request) for oid in validators])
        blocks = []
        for oid, reply in zip(validators, replies, strict=True):
            columns = ev.accept(oid, reply, m.ContributionColumns, sealed=True)
            _require(columns.input_digests == digests, f"{oid} used other round-one updates")
            blocks.append(columns.columns)
        rng, commitment = self._commit_rotation("contributions")
        mixed = mix_columns(blocks, precision_bits, rng)
        remixer = contribution_remixer(validators)
        ev.record(
            records.MixColumns(
                inputs=[[vector_digest(c) for c in block] for block in blocks],
                commitment=commitment,
                columns=[vector_ref(c) for c in mixed],
            ),
            # Without a remix the buyer receives these columns: then they are public.
            public=mixed if remixer is None else (),
            sealed=mixed if remixer is not None else (),
        )
        request_gram = m.GramRequest(tuple(mixed), base_round=0)
        if remixer is not None:
            remix = self._remix_columns(remixer, mixed, precision_bits)
            mixed = list(remix.columns)
            request_gram = m.GramRequest(
                remix.columns,
                base_round=0,
                remixer=remixer,
                remix_inputs=remix.input_digests,
                remix_commitment=remix.commitment,
                remix_signature=remix.signature,
            )
        seed = shapley_seed(ev.head)
        reply = self.transport.request(
            self.buyer_id, dataclasses.replace(request_gram, shapley_seed=seed)
        )
        values = ev.accept(self.buyer_id, reply, m.ContributionValues, sealed=False)
        _require(
            values.column_digests == tuple(vector_digest(c) for c in mixed)
            and values.base_round == 0
            and values.seed == seed,
            "the buyer's contributions answer another request",
        )
        if len(values.values) != len(first_updates):
            raise ProtocolError("the buyer returned the wrong number of contributions")
        return list(values.values)

    def _remix(self, k: int, remixer: str, mixed: EncryptedVector, precision_bits: int) -> m.Remix:
        """Have ``remixer`` rotate the mixed vector again; check and record its signed reply."""
        reply = self.transport.request(remixer, m.RemixRequest(k, mixed))
        # Public: the buyer receives the remixed vector anyway.
        remix = self.evidence.accept(remixer, reply, m.Remix, sealed=False)
        _require(
            remix.round == k and remix.input_digest == vector_digest(mixed),
            f"{remixer} remixed another vector",
        )
        _require(
            _remixed_shape(mixed, remix.vector, precision_bits),
            f"{remixer}'s remix has the wrong size, key or precision",
        )
        return remix

    def _remix_columns(
        self, remixer: str, mixed: list[EncryptedVector], precision_bits: int
    ) -> m.RemixColumns:
        """Have ``remixer`` rotate the mixed columns again; check and record its signed reply."""
        reply = self.transport.request(remixer, m.RemixColumnsRequest(tuple(mixed)))
        remix = self.evidence.accept(remixer, reply, m.RemixColumns, sealed=False)
        _require(
            remix.input_digests == tuple(vector_digest(c) for c in mixed),
            f"{remixer} remixed other columns",
        )
        _require(
            len(remix.columns) == len(mixed)
            and all(
                _remixed_shape(a, b, precision_bits)
                for a, b in zip(mixed, remix.columns, strict=True)
            ),
            f"{remixer}'s remixed columns have the wrong size, key or precision",
        )
        return remix

    def _standardize(
        self,
        key: PublicKey,
        exponent: int,
        n_features: int,
        include_target: bool,
        classes: int = 0,
        impute: bool = False,
    ) -> m.PublicStats:
        ev = self.evidence
        expected = sums_length(n_features, include_target, classes, impute)
        masks = zero_sum_masks(len(self.owner_ids), expected, key)
        replies = self.transport.request_all(
            [
                (oid, m.StatsRequest(include_target, key, exponent, mask, classes, impute))
                for oid, mask in zip(self.owner_ids, masks, strict=True)
            ]
        )
        signed = [
            ev.accept(oid, r, m.EncryptedSums, sealed=True)
            for oid, r in zip(self.owner_ids, replies, strict=True)
        ]
        sums = [s.sums for s in signed]
        if any(len(s) != expected or s.public_key != key for s in sums):
            raise ProtocolError("an owner sent statistics of the wrong size or key")
        total: EncryptedVector = sum(sums)  # type: ignore[assignment]
        ev.record(
            records.StatsTotal(
                inputs=[vector_digest(s) for s in sums],
                contributors=len(sums),
                include_target=include_target,
                total=vector_ref(total),
            ),
            public=[total],
        )
        # The buyer checks each owner's signature: it decrypts a sum over every seat.
        decrypt = m.DecryptStats(
            total,
            len(sums),
            n_features,
            include_target,
            tuple(self.owner_ids),
            tuple(sums),
            tuple(s.signature for s in signed),
            classes,
            impute,
        )
        reply = self.transport.request(self.buyer_id, decrypt)
        stats = ev.accept(self.buyer_id, reply, m.PublicStats, sealed=False)
        _require(stats.total_digest == vector_digest(total), "the buyer decrypted another total")
        # The owners need the statistics, not the evidence.
        return dataclasses.replace(
            stats, total_digest="", plaintexts=(), randomness=(), signature=""
        )

    def _refresh(
        self, k: int, trainers: list[str], base_exponent: int
    ) -> dict[str, EncryptedVector]:
        replies = self.transport.request_all([(oid, m.RefreshPrepare(k)) for oid in trainers])
        masked = [_expect(r, m.MaskedState) for r in replies]
        _require(all(s.round == k for s in masked), "a trainer masked another round's state")
        # The buyer checks each trainer's signature: it refreshes only masked states.
        request = m.RefreshRequest(
            k,
            tuple(s.masked for s in masked),
            base_exponent,
            tuple(trainers),
            tuple(s.signature for s in masked),
        )
        fresh = _expect(self.transport.request(self.buyer_id, request), m.Refreshed)
        if len(fresh.vectors) != len(trainers):
            raise ProtocolError("the buyer refreshed the wrong number of vectors")
        done = self.transport.request_all(
            [
                (oid, m.RefreshComplete(k, vec))
                for oid, vec in zip(trainers, fresh.vectors, strict=True)
            ]
        )
        return self._accept_states(k, "refresh", trainers, done, fresh.vectors)

    def _initial_metric(
        self,
        record: TrainingRecord,
        initial_model: EncryptedVector,
        validators: list[str],
        spec: m.TrainingSpec,
    ) -> EncryptedVector:
        """Round 0: the initial model times the trainers (public, recorded) evaluated by
        the validators, into ``record.initial_metric``; returns that total."""
        total = initial_model.mul_int(len(record.trainers))
        self.evidence.record(
            records.InitialTotal(
                model=vector_ref(initial_model),
                multiplier=len(record.trainers),
                total=vector_ref(total),
            ),
            public=[initial_model, total],
        )
        with self.clock.phase(record, "metrics"):
            record.initial_metric = self._evaluate(0, total, validators, spec, len(record.trainers))
        return total

    # -- the Gram metric (metric_protocol: gram; roles/forms.py) ---------------------------
    def _gram_total(self, validators: list[str]) -> tuple[GramShare, ...]:
        """The validators' signed ``Enc(H_v)``, collected at the first batch of a run."""
        if self._gram is None:
            self._gram = collect_gram(self, validators)
        return self._gram

    def _gram_metric(
        self, k: int, total: EncryptedVector, validators: list[str], spec: m.TrainingSpec,
        n_trainers: int,
    ) -> float:  # fmt: skip
        values = evaluate_forms(
            self, self._gram_total(validators), spec, validators, form_label(k),
            [metric_vector(total, n_trainers)], metric_pairs(), n_trainers,
        )  # fmt: skip
        _require(len(values.results) == 1, "the buyer's metric is not one number")
        return values.results[0]

    def _gram_contributions(
        self, first_updates: list[EncryptedVector], validators: list[str], spec: m.TrainingSpec
    ) -> list[float]:
        if self._initial_model is None:
            raise ProtocolError("the contributions need the initial model of this run")
        vectors = contribution_vectors(
            first_updates, self._initial_model, spec.relaxation, spec.precision_bits
        )
        values = evaluate_forms(
            self, self._gram_total(validators), spec, validators, FORM_CONTRIBUTIONS, vectors,
            contribution_pairs(len(vectors)),
            encoded_relaxation(spec.relaxation, spec.precision_bits),
        )  # fmt: skip
        if len(values.results) != len(first_updates):
            raise ProtocolError("the buyer returned the wrong number of contributions")
        return list(values.results)

    def _evaluate(
        self, k: int, total: EncryptedVector, validators: list[str], spec: m.TrainingSpec,
        n_trainers: int,
    ) -> float:  # fmt: skip
        if spec.metric_protocol == "gram":
            return self._gram_metric(k, total, validators, spec, n_trainers)
        ev = self.evidence
        precision_bits = spec.precision_bits
        outgoing = self._broadcast(k, "evaluate", total, sealed=True)
        replies = self.transport.request_all(
            [(oid, m.EvaluateRequest(k, outgoing)) for oid in validators]
        )
        parts = []
        for oid, reply in zip(validators, replies, strict=True):
            part = ev.accept(oid, reply, m.EncryptedResiduals, sealed=True)
            _require(
                part.round == k and part.input_digest == vector_digest(outgoing),
                f"{oid} evaluated another model",
            )
            parts.append(part)
        rng, commitment = self._commit_rotation(f"metric-{k}")
        mixed = mix_residual_vectors([p.vector for p in parts], precision_bits, rng)
        rows = sum(p.rows for p in parts)
        remixer = metric_remixer(validators, k, spec.eval_every)
        ev.record(
            records.Mix(
                round=k,
                inputs=[vector_digest(p.vector) for p in parts],
                rows=rows,
                commitment=commitment,
                mixed=vector_ref(mixed),
            ),
            # Without a remix the buyer receives this vector: then it is public.
            public=[mixed] if remixer is None else (),
            sealed=[mixed] if remixer is not None else (),
        )
        request = m.MetricRequest(k, mixed, rows)
        if remixer is not None:
            remix = self._remix(k, remixer, mixed, precision_bits)
            mixed = remix.vector
            request = m.MetricRequest(
                k, mixed, rows, remixer, remix.input_digest, remix.commitment, remix.signature
            )
        reply = self.transport.request(self.buyer_id, request)
        value = ev.accept(self.buyer_id, reply, m.MetricValue, sealed=False)
        _require(
            value.round == k and value.rows == rows and value.vector_digest == vector_digest(mixed),
            "the buyer's metric answers another request",
        )
        return value.value
