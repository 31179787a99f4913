"""The aggregator's state and evidence helpers (the base of ``roles.aggregator.Aggregator``)."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from eth_account import Account

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.errors import PartyTimeout, ProtocolError
from deltaml.evidence.published import (
    rotation_commitment,
)
from deltaml.evidence.signatures import hex_ints, vector_digest, vector_ref
from deltaml.evidence.transcript import FORMAT, TranscriptWriter
from deltaml.learning.metrics import rotation_growth_bits
from deltaml.protocol import messages as m
from deltaml.protocol import records
from deltaml.protocol.form_messages import GramShare
from deltaml.protocol.rules import split_roles as split_roles  # a public rule
from deltaml.roles.evidence import EvidenceRecorder
from deltaml.roles.forms import MaskHolder
from deltaml.roles.training_state import Checkpoint, PhaseClock

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from deltaml.transport.base import Transport

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=m.Message)


class AggregatorBase:
    """What every step of :class:`~deltaml.roles.aggregator.Aggregator` shares: its
    parties, its account, its transcript and its secret rotation openings."""

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
        #: metric_protocol gram: the validators' signed Gram matrices, the first mask
        #: when there is one validator, and the initial model, for the run in progress
        #: (roles/forms.py).
        self._gram: tuple[GramShare, ...] | None = None
        self.form_holder = MaskHolder()
        self.gram_holders: set[str] = set()  # the holders the shares went to ("": itself)
        self._initial_model: EncryptedVector | None = None
        #: Wall and CPU time of each phase, into the training's record.
        self.clock = PhaseClock(transport.cpu_seconds, buyer_id)

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def evidence(self) -> EvidenceRecorder:
        if self._ev is None:
            raise ProtocolError("no training is running")
        return self._ev

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
        self.evidence.record(
            records.Dropped(round=k, dropped=list(silent.parties), remaining=remaining)
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

    # -- evidence helpers ---------------------------------------------------------------
    def _header(
        self,
        spec: m.TrainingSpec,
        public_key: PublicKey,
        trainers: list[str],
        validators: list[str],
        n_features: int,
    ) -> records.Header:
        def address(party_id: str) -> str:
            if party_id == self.party_id:
                return self.address
            return (self.addresses or {}).get(party_id, "")

        roles = [(self.buyer_id, "buyer"), (self.party_id, "aggregator")]
        roles += [(oid, "trainer" if oid in trainers else "validator") for oid in self.owner_ids]
        return records.Header(
            format=FORMAT,
            public_key=public_key.to_dict(),
            spec=dataclasses.asdict(spec),
            n_features=n_features,
            owners=list(self.owner_ids),
            trainers=list(trainers),
            validators=list(validators),
            participants=[
                {"id": pid, "role": role, "address": address(pid)} for pid, role in roles
            ],
        )

    def _broadcast(
        self, k: int, purpose: str, total: EncryptedVector, *, sealed: bool
    ) -> EncryptedVector:
        """Re-randomize ``total`` to send it, and record the exponents that prove it."""
        outgoing, exponents = total.rerandomize_with_exponents()
        self.evidence.record(
            records.Broadcast(
                round=k,
                purpose=purpose,
                source=vector_digest(total),
                exponents=hex_ints(exponents),
                outgoing=vector_ref(outgoing),
            ),
            public=() if sealed else [outgoing],
            sealed=[outgoing] if sealed else (),
        )
        return outgoing

    def _sum(
        self, k: int, phase: str, trainers: list[str], states: Mapping[str, EncryptedVector]
    ) -> EncryptedVector:
        total: EncryptedVector = sum(states[oid] for oid in trainers)  # type: ignore[assignment]
        self.evidence.record(
            records.Sum(
                round=k,
                phase=phase,
                inputs=[vector_digest(states[oid]) for oid in trainers],
                total=vector_ref(total),
            ),
            sealed=[total],
        )
        return total

    def _commit_rotation(self, label: str) -> tuple[np.random.Generator, str]:
        """A fresh secret rotation seed, kept with its salt: its generator and commitment."""
        seed, salt = secrets.randbits(128), secrets.token_bytes(32)
        self.rotation_openings[label] = (seed, salt)
        return np.random.default_rng(seed), rotation_commitment(seed, salt)


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
