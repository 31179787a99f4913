"""The federated aggregator: orchestrates the rounds and adds ciphertexts it cannot read."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from eth_account import Account

from deltaml.crypto import EncryptedVector, PublicKey, needs_refresh
from deltaml.crypto.serialization import pack_vectors, unpack_vectors
from deltaml.errors import DeltaMLValueError, PartyTimeout, ProtocolError
from deltaml.evidence.published import (
    is_evaluated,
    last_round,
    rotation_commitment,
    shapley_seed,
)
from deltaml.evidence.signatures import hex_ints, vector_digest, vector_ref
from deltaml.evidence.transcript import FORMAT, TranscriptWriter
from deltaml.learning.contributions import (
    contribution_remixer,
    contribution_weights,
    mix_columns,
)
from deltaml.learning.metrics import metric_remixer, mix_residual_vectors, rotation_growth_bits
from deltaml.learning.standardize import sums_length
from deltaml.ledger.payouts import Payouts, compute_payouts, scale_metric
from deltaml.protocol.rules import split_roles as split_roles  # a public rule
from deltaml.roles import messages as m
from deltaml.roles.evidence import EvidenceRecorder
from deltaml.roles.exact import train_exact

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from deltaml.transport.base import Transport

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=m.Message)


@dataclass
class RoundRecord:
    round: int
    seconds: float
    refreshed: bool = False
    metric: float | None = None


@dataclass
class TrainingRecord:
    """What the aggregator may know and keeps: who did what, public metrics, timings."""

    trainers: list[str]
    validators: list[str]
    split_seed: int
    rounds: list[RoundRecord] = field(default_factory=list)
    refreshes: int = 0
    setup_seconds: float = 0.0
    training_seconds: float = 0.0
    metric_seconds: float = 0.0
    contribution_seconds: float = 0.0
    initial_metric: float | None = None
    #: Shapley value of each trainer (in ``trainers`` order), in validation-SSE units.
    contributions: list[float] = field(default_factory=list)
    #: The integer weights the payment rule uses (``contribution_weights``), trainer order.
    contribution_weights: list[int] = field(default_factory=list)
    #: The split of the deposit by :func:`~deltaml.ledger.payouts.compute_payouts`.
    payouts: Payouts | None = None
    #: Hash of the transcript's last record: what goes on the contract.
    transcript_head: str = ""
    #: Trainers dropped for not answering (their states left the sum; they earn nothing).
    dropped: list[str] = field(default_factory=list)

    @property
    def active(self) -> list[str]:
        """The trainers still in the training, in ``trainers`` order."""
        return [t for t in self.trainers if t not in self.dropped]

    @property
    def metrics(self) -> dict[int, float]:
        return {r.round: r.metric for r in self.rounds if r.metric is not None}

    @property
    def published(self) -> dict[int, float]:
        """Every published metric by round, the initial model's as round 0."""
        initial = {} if self.initial_metric is None else {0: self.initial_metric}
        return {**initial, **self.metrics}


ProgressCallback = Callable[[RoundRecord], None]


@dataclass
class Checkpoint:
    """The aggregator's whole training state after a completed round (0: after set-up).

    Everything in it is a ciphertext, public, or the aggregator's own secret (its
    rotation openings): it is what a restarted aggregator needs to go on, and is
    stored only by the aggregator.
    """

    round: int
    record: TrainingRecord
    states: dict[str, EncryptedVector]
    total: EncryptedVector
    #: Each trainer's round-one state (for contributions), once round one is done.
    first_updates: dict[str, EncryptedVector]
    next_growth: int
    rotation_openings: dict[str, tuple[int, bytes]]
    transcript_head: str
    transcript_count: int

    def to_json(self) -> dict[str, Any]:
        trainers = self.record.active
        first = sorted(self.first_updates)
        vectors = [
            self.total,
            *(self.states[t] for t in trainers),
            *(self.first_updates[t] for t in first),
        ]
        record = dataclasses.asdict(self.record)
        record.pop("payouts", None)
        return {
            "round": self.round,
            "record": record,
            "vectors": pack_vectors(vectors),
            "first_updates": first,
            "next_growth": self.next_growth,
            "rotation_openings": {
                label: [seed, salt.hex()] for label, (seed, salt) in self.rotation_openings.items()
            },
            "transcript_head": self.transcript_head,
            "transcript_count": self.transcript_count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        raw = dict(data["record"])
        rounds = [RoundRecord(**r) for r in raw.pop("rounds")]
        record = TrainingRecord(**raw, rounds=rounds)
        vectors = unpack_vectors(data["vectors"])
        n = len(record.active)
        return cls(
            round=int(data["round"]),
            record=record,
            states=dict(zip(record.active, vectors[1 : 1 + n], strict=True)),
            total=vectors[0],
            first_updates=dict(zip(data["first_updates"], vectors[1 + n :], strict=True)),
            next_growth=int(data["next_growth"]),
            rotation_openings={
                label: (int(seed), bytes.fromhex(salt))
                for label, (seed, salt) in data["rotation_openings"].items()
            },
            transcript_head=str(data["transcript_head"]),
            transcript_count=int(data["transcript_count"]),
        )


class Aggregator:
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

    def __init__(
        self,
        transport: Transport,
        buyer_id: str,
        owner_ids: Sequence[str],
        party_id: str = "aggregator",
        *,
        account: LocalAccount | None = None,
        addresses: Mapping[str, str] | None = None,
        transcript: TranscriptWriter | None = None,
    ):
        self.party_id = party_id
        self.transport = transport
        self.buyer_id = buyer_id
        self.owner_ids = list(owner_ids)
        self.account: LocalAccount = account if account is not None else Account.create()
        self.addresses = dict(addresses) if addresses is not None else None
        self.transcript = transcript
        self.rotation_openings: dict[str, tuple[int, bytes]] = {}
        self._ev: EvidenceRecorder | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def evidence(self) -> EvidenceRecorder:
        if self._ev is None:
            raise ProtocolError("no training is running")
        return self._ev

    def train(
        self,
        spec: m.TrainingSpec,
        public_key: PublicKey,
        initial_model: EncryptedVector,
        n_features: int,
        include_target: bool,
        progress: ProgressCallback | None = None,
        *,
        checkpoint: Callable[[Checkpoint], None] | None = None,
        resume: Checkpoint | None = None,
    ) -> TrainingRecord:
        """Run ``spec`` to the end and return what the aggregator may keep.

        ``checkpoint`` is called with the whole training state after the set-up and
        after each round; passing the last one back as ``resume`` (with the
        transcript writer reopened where it ended, :meth:`TranscriptWriter.reopen`)
        continues from there to the same final model: a data owner asked a round
        again recomputes it from the state it kept.
        """
        if spec.rounds < 1:
            raise DeltaMLValueError("rounds must be at least 1")
        if spec.eval_every < 1:
            raise DeltaMLValueError("eval_every must be at least 1")
        if not 0 <= spec.target_improvement < 100:
            raise DeltaMLValueError("target_improvement must be at least 0 and below 100 %")
        if len(initial_model) != n_features + 1:
            raise DeltaMLValueError(
                "the initial model needs one weight per feature plus the intercept"
            )
        if spec.solver == "exact":  # one masked solve instead of rounds (roles/exact.py)
            return train_exact(self, spec, public_key, initial_model, n_features, include_target)
        if resume is None:
            cp = self._set_up(spec, public_key, initial_model, n_features, include_target)
            if checkpoint is not None:
                checkpoint(cp)
        else:
            cp = resume
            self.rotation_openings = dict(cp.rotation_openings)
            self._ev = self._recorder(public_key)
            if self._ev.head != cp.transcript_head:
                raise ProtocolError("the transcript does not end where the checkpoint does")
            log.info("resuming after round %d", cp.round)
        record, validators = cp.record, cp.record.validators
        ev = self.evidence

        for k in range(cp.round + 1, spec.rounds + 1):
            if last_round(spec.rounds, spec.target_improvement, record.published) < k:
                log.info("the target improvement was reached at round %d", k - 1)
                break
            r0 = time.perf_counter()
            forced = False
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
            record.training_seconds += time.perf_counter() - r0
            if is_evaluated(k, spec.rounds, spec.eval_every):
                e0 = time.perf_counter()
                rec.metric = self._evaluate(k, total, validators, spec)
                record.metric_seconds += time.perf_counter() - e0
            rec.seconds = time.perf_counter() - r0
            record.rounds.append(rec)
            cp.round, cp.states, cp.total = k, states, total
            cp.transcript_head, cp.transcript_count = ev.head, ev.writer.count
            cp.rotation_openings = dict(self.rotation_openings)
            if checkpoint is not None:
                checkpoint(cp)
            if progress is not None:
                progress(rec)
        active, total = record.active, cp.total

        if spec.contributions:
            c0 = time.perf_counter()
            values = self._contributions(
                [cp.first_updates[t] for t in active], validators, spec.precision_bits
            )
            # A dropped trainer's model is not in the result: it is measured as nothing.
            by_trainer = dict(zip(active, values, strict=True))
            record.contributions = [by_trainer.get(t, 0.0) for t in record.trainers]
            record.contribution_seconds = time.perf_counter() - c0
        rounds = record.rounds[-1].round
        # Sealed: the public transcript names the final model by its digest only, so
        # nobody (the buyer included) reads the model from it before settlement.
        final = self._broadcast(rounds, "final", total, sealed=True)
        _expect(
            self.transport.request(self.buyer_id, m.FinalModel(final, len(active), rounds)),
            m.Ack,
        )
        self._settle(spec, record)
        record.transcript_head = ev.head
        return record

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

    def _accept_states(
        self,
        k: int,
        phase: str,
        trainers: list[str],
        replies: Sequence[m.Message],
        inputs: Sequence[EncryptedVector],
    ) -> dict[str, EncryptedVector]:
        """The trainers' signed states, each checked to answer the vector it was sent."""
        states = {}
        for oid, reply, vec in zip(trainers, replies, inputs, strict=True):
            update = self.evidence.accept(oid, reply, m.StateUpdate, sealed=True)
            _require(
                update.round == k
                and update.phase == phase
                and update.input_digest == vector_digest(vec),
                f"{oid} answered the {phase} of round {k} with a state for another input",
            )
            states[oid] = update.state
        return states

    def _drop(self, k: int, silent: PartyTimeout, cp: Checkpoint, spec: m.TrainingSpec) -> None:
        """Go on without the trainers that did not answer in round ``k``, if enough remain."""
        record = cp.record
        active = record.active
        others = [p for p in silent.parties if p not in active]
        if others:
            raise ProtocolError(f"{silent}; only trainers can be dropped") from silent
        remaining = [t for t in active if t not in silent.parties]
        if len(remaining) < max(1, spec.min_trainers):
            raise ProtocolError(
                f"{silent}; {len(remaining)} trainer(s) would remain, "
                f"fewer than the {max(1, spec.min_trainers)} the request needs"
            ) from silent
        log.warning("round %d: dropping %d silent trainer(s)", k, len(silent.parties))
        record.dropped.extend(silent.parties)
        self.evidence.own(
            "Dropped", {"round": k, "dropped": silent.parties, "remaining": remaining}
        )
        replies = self.transport.request_all(
            [(oid, m.Reconfigure(k, len(remaining))) for oid in remaining + record.validators]
        )
        growth = max(_expect(r, m.SetupDone).growth_bits for r in replies[: len(remaining)])
        metric_growth = _metric_growth(
            spec.precision_bits, len(record.validators), len(cp.total) - 1
        )
        cp.next_growth = growth + len(remaining).bit_length() + metric_growth
        cp.states = {t: cp.states[t] for t in remaining}

    def _recorder(self, public_key: PublicKey) -> EvidenceRecorder:
        writer = self.transcript if self.transcript is not None else TranscriptWriter(keep=False)
        return EvidenceRecorder(public_key, self.account, self.party_id, writer, self.addresses)

    def _set_up(
        self,
        spec: m.TrainingSpec,
        public_key: PublicKey,
        initial_model: EncryptedVector,
        n_features: int,
        include_target: bool,
    ) -> Checkpoint:
        """Roles, standardization, the owners' set-up and the initial model's metric."""
        t0 = time.perf_counter()
        trainers, validators = split_roles(self.owner_ids, spec.trainer_fraction, spec.split_seed)
        record = TrainingRecord(trainers, validators, spec.split_seed)
        log.info(
            "split: %d trainers, %d validators (seed %d)",
            len(trainers),
            len(validators),
            spec.split_seed,
        )
        ev = self._ev = self._recorder(public_key)
        ev.own("Header", self._header(spec, public_key, trainers, validators, n_features))

        stats = self._standardize(public_key, spec.base_exponent, n_features, include_target)
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
        total = initial_model.mul_int(len(trainers))
        ev.own(
            "InitialTotal",
            {
                "model": vector_ref(initial_model),
                "multiplier": len(trainers),
                "total": vector_ref(total),
            },
            public=[initial_model, total],
        )
        record.setup_seconds = time.perf_counter() - t0
        e0 = time.perf_counter()
        record.initial_metric = self._evaluate(0, total, validators, spec)
        record.metric_seconds += time.perf_counter() - e0
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

    # -- evidence helpers ---------------------------------------------------------------
    def _header(
        self,
        spec: m.TrainingSpec,
        public_key: PublicKey,
        trainers: list[str],
        validators: list[str],
        n_features: int,
    ) -> dict[str, object]:
        def address(party_id: str) -> str:
            if party_id == self.party_id:
                return self.address
            return (self.addresses or {}).get(party_id, "")

        roles = [(self.buyer_id, "buyer"), (self.party_id, "aggregator")]
        roles += [(oid, "trainer" if oid in trainers else "validator") for oid in self.owner_ids]
        return {
            "format": FORMAT,
            "public_key": public_key.to_dict(),
            "spec": dataclasses.asdict(spec),
            "n_features": n_features,
            "owners": list(self.owner_ids),
            "trainers": list(trainers),
            "validators": list(validators),
            "participants": [
                {"id": pid, "role": role, "address": address(pid)} for pid, role in roles
            ],
        }

    def _broadcast(
        self, k: int, purpose: str, total: EncryptedVector, *, sealed: bool
    ) -> EncryptedVector:
        """Re-randomize ``total`` to send it, and record the exponents that prove it."""
        outgoing, exponents = total.rerandomize_with_exponents()
        self.evidence.own(
            "Broadcast",
            {
                "round": k,
                "purpose": purpose,
                "source": vector_digest(total),
                "exponents": hex_ints(exponents),
                "outgoing": vector_ref(outgoing),
            },
            public=() if sealed else [outgoing],
            sealed=[outgoing] if sealed else (),
        )
        return outgoing

    def _sum(
        self, k: int, phase: str, trainers: list[str], states: Mapping[str, EncryptedVector]
    ) -> EncryptedVector:
        total: EncryptedVector = sum(states[oid] for oid in trainers)  # type: ignore[assignment]
        self.evidence.own(
            "Sum",
            {
                "round": k,
                "phase": phase,
                "inputs": [vector_digest(states[oid]) for oid in trainers],
                "total": vector_ref(total),
            },
            sealed=[total],
        )
        return total

    def _commit_rotation(self, label: str) -> tuple[np.random.Generator, str]:
        """A fresh secret rotation seed, kept with its salt: its generator and commitment."""
        seed, salt = secrets.randbits(128), secrets.token_bytes(32)
        self.rotation_openings[label] = (seed, salt)
        return np.random.default_rng(seed), rotation_commitment(seed, salt)

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
        self.evidence.own(
            "Payouts",
            {
                "deposit_wei": spec.deposit_wei,
                "initial_round": 0,
                "final_round": record.rounds[-1].round,
                "initial_metric": initial_scaled,
                "final_metric": final_scaled,
                "trainers": list(record.trainers),
                "contribution_weights": weights,
                "validators": list(record.validators),
                "trainers_wei": list(payouts.trainers),
                "validators_wei": list(payouts.validators),
                "aggregator_wei": payouts.aggregator,
                "refund_wei": payouts.refund,
            },
        )
        record.contribution_weights = weights
        record.payouts = payouts

    # -- protocol steps -----------------------------------------------------------------
    def _contributions(
        self, first_updates: list[EncryptedVector], validators: list[str], precision_bits: int
    ) -> list[float]:
        ev = self.evidence
        sent = [u.rerandomize_with_exponents() for u in first_updates]
        outgoing = tuple(v for v, _ in sent)
        ev.own(
            "ContributionRequest",
            {
                "sources": [vector_digest(u) for u in first_updates],
                "exponents": [hex_ints(e) for _, e in sent],
                "outgoing": [vector_ref(v) for v in outgoing],
            },
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
        ev.own(
            "MixColumns",
            {
                "inputs": [[vector_digest(c) for c in block] for block in blocks],
                "commitment": commitment,
                "columns": [vector_ref(c) for c in mixed],
            },
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
        self, key: PublicKey, exponent: int, n_features: int, include_target: bool
    ) -> m.PublicStats:
        ev = self.evidence
        masks = zero_sum_masks(len(self.owner_ids), sums_length(n_features, include_target), key)
        replies = self.transport.request_all(
            [
                (oid, m.StatsRequest(include_target, key, exponent, mask))
                for oid, mask in zip(self.owner_ids, masks, strict=True)
            ]
        )
        signed = [
            ev.accept(oid, r, m.EncryptedSums, sealed=True)
            for oid, r in zip(self.owner_ids, replies, strict=True)
        ]
        sums = [s.sums for s in signed]
        expected = sums_length(n_features, include_target)
        if any(len(s) != expected or s.public_key != key for s in sums):
            raise ProtocolError("an owner sent statistics of the wrong size or key")
        total: EncryptedVector = sum(sums)  # type: ignore[assignment]
        ev.own(
            "StatsTotal",
            {
                "inputs": [vector_digest(s) for s in sums],
                "contributors": len(sums),
                "include_target": include_target,
                "total": vector_ref(total),
            },
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

    def _evaluate(
        self, k: int, total: EncryptedVector, validators: list[str], spec: m.TrainingSpec
    ) -> float:
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
        ev.own(
            "Mix",
            {
                "round": k,
                "inputs": [vector_digest(p.vector) for p in parts],
                "rows": rows,
                "commitment": commitment,
                "mixed": vector_ref(mixed),
            },
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


def zero_sum_masks(n_owners: int, length: int, key: PublicKey) -> list[tuple[str, ...]]:
    """One mask per owner, ``length`` signed integers each (hex), adding up to zero.

    Each is uniform over ``key_bits / 2`` bits (the last is minus the sum of the
    others): far wider, by more than 80 bits, than any sum of an owner's data at the
    base exponent, and ``n_owners`` of them stay far below the key's budget. The
    buyer decrypting one owner's masked sums sees a value independent of them; the
    total is exact.
    """
    bits = key.key_bits // 2
    rows = [[secrets.randbits(bits) for _ in range(length)] for _ in range(n_owners - 1)]
    rows.append([-sum(col) for col in zip(*rows, strict=True)] if rows else [0] * length)
    return [tuple(format(v, "x") for v in row) for row in rows]


def _metric_growth(precision_bits: int, n_validators: int, n_features: int) -> int:
    """Bits an evaluation can add to the total's bound, for scheduling refreshes.

    The validator's rotated factor (``precision_bits`` and a margin of 8 bits for its
    norm), the aggregator's mixing rotation and the remixer's rotation: each of
    ``precision_bits`` and at most ``½·log₂`` of the mixed size
    (:func:`~deltaml.learning.metrics.rotation_growth_bits`), never less than the
    validator's margin.
    """
    margin = precision_bits + 8
    size = max(n_validators, 1) * (n_features + 3)  # + 1: a noise coordinate
    rotation = max(margin, rotation_growth_bits(size, precision_bits))
    rotations = 2  # the aggregator's mix and the remix (a single validator remixes too)
    return margin + rotations * rotation


def _remixed_shape(mixed: EncryptedVector, remixed: EncryptedVector, precision_bits: int) -> bool:
    """A remix keeps the key and the length and adds exactly ``precision_bits`` of exponent."""
    return (
        remixed.public_key == mixed.public_key
        and len(remixed) == len(mixed)
        and remixed.exponent == mixed.exponent + precision_bits
    )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ProtocolError(message)


def _expect(reply: m.Message, kind: type[_M]) -> _M:
    if not isinstance(reply, kind):
        raise ProtocolError(f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply
