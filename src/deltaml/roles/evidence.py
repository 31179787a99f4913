"""Evidence from the roles: what each signed message's body is, signing, and recording.

A party signs its own replies (:func:`sign_message`) with its Ethereum account; the
aggregator checks each signature on receipt against the address the party
registered with and records the signed body in the transcript
(:class:`EvidenceRecorder`), together with its own signed records (sums,
re-randomizations, mixing commitments, payouts). The body of a message is a pure
function of its fields (:func:`message_body`), so sender, aggregator and verifier
compute the same bytes.

Which messages are signed, and by whom (the remixer is the validator a public rule
names, see :mod:`deltaml.learning.metrics`):

=====================  ==========  ======================================================
message                signer      what the signature binds
=====================  ==========  ======================================================
EncryptedSums          data owner  its encrypted statistics
StateUpdate            trainer     its state for a round, and the total it was computed from
MaskedState            trainer     its masked state for a refresh (checked by the buyer)
EncryptedResiduals     validator   its rotated residual vector and the total it evaluated
ContributionColumns    validator   its rotated columns and the updates they came from
Remix                  remixer     the remixed vector, the mixed vector it was given, and
                                   the commitment to its rotation
RemixColumns           remixer     the remixed columns, the mixed columns it was given, and
                                   the commitment to its rotation
PublicStats            buyer       the decrypted statistics total, with proofs, and the stats
MetricValue            buyer       the decrypted (re)mixed vector, with proofs, the metric
ContributionValues     buyer       the decrypted (re)mixed columns, proofs, Gram, Shapley
GramShare …FormValues  validator,  the Gram metric's steps (``metric_protocol: gram``,
                       holders,    :mod:`deltaml.protocol.form_messages`)
                       buyer
=====================  ==========  ======================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import ProtocolError
from deltaml.evidence.signatures import (
    key_id,
    recover_signer,
    sign_body,
    vector_bytes,
    vector_digest,
    vector_ref,
)
from deltaml.evidence.transcript import TranscriptWriter
from deltaml.protocol import exact_messages as xm
from deltaml.protocol import form_messages as fm
from deltaml.protocol import form_records as fr
from deltaml.protocol import messages as m
from deltaml.protocol import records
from deltaml.protocol.records import Record

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

_M = TypeVar("_M", bound=m.Message)


def _floats(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values]


def _sums(msg: m.EncryptedSums) -> records.Record:
    return records.EncryptedSums(sums=vector_ref(msg.sums))


def _stats(msg: m.PublicStats) -> records.Record:
    return records.PublicStats(
        total=msg.total_digest,
        plaintexts=list(msg.plaintexts),
        randomness=list(msg.randomness),
        count=msg.count,
        means=_floats(msg.means),
        scales=_floats(msg.scales),
        target_mean=float(msg.target_mean),
        target_scale=float(msg.target_scale),
        class_counts=list(msg.class_counts),
        class_means=_floats(msg.class_means),
        impute_means=_floats(msg.impute_means),
    )


def _state(msg: m.StateUpdate) -> records.Record:
    return records.StateUpdate(
        round=msg.round, phase=msg.phase, input=msg.input_digest, state=vector_ref(msg.state)
    )


def _masked(msg: m.MaskedState) -> records.Record:
    return records.MaskedState(round=msg.round, masked=vector_ref(msg.masked))


def _residuals(msg: m.EncryptedResiduals) -> records.Record:
    return records.EncryptedResiduals(
        round=msg.round, rows=msg.rows, input=msg.input_digest, vector=vector_ref(msg.vector)
    )


def _metric(msg: m.MetricValue) -> records.Record:
    return records.MetricValue(
        round=msg.round,
        rows=msg.rows,
        vector=msg.vector_digest,
        slot_bits=msg.slot_bits,
        plaintexts=list(msg.plaintexts),
        randomness=list(msg.randomness),
        value=float(msg.value),
        denominator=msg.denominator,
    )


def _columns(msg: m.ContributionColumns) -> records.Record:
    return records.ContributionColumns(
        inputs=list(msg.input_digests), columns=[vector_ref(c) for c in msg.columns]
    )


def _remix(msg: m.Remix) -> records.Record:
    return records.Remix(
        round=msg.round,
        input=msg.input_digest,
        commitment=msg.commitment,
        vector=vector_ref(msg.vector),
    )


def _remix_columns(msg: m.RemixColumns) -> records.Record:
    return records.RemixColumns(
        inputs=list(msg.input_digests),
        commitment=msg.commitment,
        columns=[vector_ref(c) for c in msg.columns],
    )


def _contributions(msg: m.ContributionValues) -> records.Record:
    return records.ContributionValues(
        columns=list(msg.column_digests),
        slot_bits=msg.slot_bits,
        plaintexts=list(msg.plaintexts),
        randomness=list(msg.randomness),
        gram=[_floats(row) for row in msg.gram],
        base_round=msg.base_round,
        base_sse=float(msg.base_sse),
        seed=msg.seed,
        method=msg.method,
        values=_floats(msg.values),
        denominator=msg.denominator,
    )


def _system(msg: xm.ExactSystem) -> records.Record:
    return records.ExactSystem(system=vector_ref(msg.system))


def _exact_masked(msg: xm.ExactMasked) -> records.Record:
    return records.ExactMasked(masked=vector_ref(msg.masked), mask_digest=msg.mask_digest)


def _check(msg: xm.ExactCheck) -> records.Record:
    return records.ExactCheck(check=vector_ref(msg.check))


def _solution(msg: xm.ExactSolution) -> records.Record:
    return records.ExactSolution(solution=vector_ref(msg.solution), masked_sum=msg.masked_digest)


def _solve_check(msg: xm.ExactSolveCheck) -> records.Record:
    return records.ExactSolveCheck(
        solution=msg.solution_digest,
        weights=list(msg.weights),
        shift=list(msg.shift),
        randomness=list(msg.randomness),
    )


def _gram_share(msg: fm.GramShare) -> records.Record:
    return fr.GramShare(gram=vector_ref(msg.gram), rows=msg.rows, bound=msg.bound)


def _form_masked(msg: fm.FormMasked) -> records.Record:
    return fr.FormMasked(
        label=msg.label,
        inputs=list(msg.input_digests),
        vectors=[vector_ref(v) for v in msg.vectors],
        proof=list(msg.proof),
        gram=msg.gram,
    )


def _form_cross(msg: fm.FormCross) -> records.Record:
    return fr.FormCross(label=msg.label, products=[vector_ref(v) for v in msg.products])


def _form_opened(msg: fm.FormOpened) -> records.Record:
    return fr.FormOpened(
        label=msg.label,
        opened=list(msg.opened),
        plaintexts=list(msg.plaintexts),
        randomness=list(msg.randomness),
        masked=list(msg.masked_digests),
        first=list(msg.first_digests),
    )


def _form_share(msg: fm.FormShare) -> records.Record:
    return fr.FormShare(
        label=msg.label,
        opened=msg.opened_digest,
        cross=list(msg.cross_digests),
        share=vector_ref(msg.share),
    )


def _form_combined(msg: fm.FormCombined) -> records.Record:
    return fr.FormCombined(
        label=msg.label,
        opened=msg.opened_digest,
        share=msg.share_digest,
        values=vector_ref(msg.values),
    )


def _form_values(msg: fm.FormValues) -> records.Record:
    return fr.FormValues(
        label=msg.label,
        results=_floats(msg.results),
        values=list(msg.values),
        plaintexts=list(msg.plaintexts),
        randomness=list(msg.randomness),
        base_sse=float(msg.base_sse),
    )


_BODIES: dict[str, Callable[[Any], records.Record]] = {
    "EncryptedSums": _sums,
    "PublicStats": _stats,
    "StateUpdate": _state,
    "MaskedState": _masked,
    "EncryptedResiduals": _residuals,
    "MetricValue": _metric,
    "ContributionColumns": _columns,
    "Remix": _remix,
    "RemixColumns": _remix_columns,
    "ContributionValues": _contributions,
    "ExactSystem": _system,
    "ExactMasked": _exact_masked,
    "ExactCheck": _check,
    "ExactSolution": _solution,
    "ExactSolveCheck": _solve_check,
    "GramShare": _gram_share,
    "FormMasked": _form_masked,
    "FormCross": _form_cross,
    "FormOpened": _form_opened,
    "FormShare": _form_share,
    "FormCombined": _form_combined,
    "FormValues": _form_values,
}

#: The kinds of message a party signs.
SIGNED_KINDS = frozenset(_BODIES)


def message_record(msg: m.Message) -> records.Record:
    """The record of a signed message kind."""
    builder = _BODIES.get(msg.kind)
    if builder is None:
        raise ProtocolError(f"{msg.kind} is not a signed message")
    return builder(msg)


def record_body(rec: records.Record, key: str) -> dict[str, Any]:
    """What a party signs for a record (``key`` is :func:`key_id` of the request)."""
    return {"kind": rec.KIND, "key": key, **rec.to_body()}


def message_body(msg: m.Message, key: str) -> dict[str, Any]:
    """The evidence body of a signed message kind (``key`` is :func:`key_id` of the request)."""
    return record_body(message_record(msg), key)


def message_vectors(msg: m.Message) -> list[EncryptedVector]:
    """The encrypted vectors a message carries (their ciphertexts go with its record)."""
    out: list[EncryptedVector] = []
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, EncryptedVector):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, EncryptedVector))
    return out


def blobs_of(vectors: Iterable[EncryptedVector]) -> dict[str, bytes]:
    return {vector_digest(v): vector_bytes(v) for v in vectors}


def sign_message(msg: _M, account: LocalAccount, public_key: PublicKey) -> _M:
    """``msg`` with its ``signature`` field set: the sender's signature over its body."""
    return dataclasses.replace(  # type: ignore[call-arg]
        msg, signature=sign_body(account, message_body(msg, key_id(public_key)))
    )


class EvidenceRecorder:
    """The aggregator's side: check signatures on receipt, sign its own records, chain them.

    With ``addresses`` (party id → the address it registered) a reply whose
    signature does not recover to its sender's address is refused with a
    :class:`ProtocolError`. Without them nothing is checked (a run without accounts);
    the records still chain.

    The final record (:class:`~deltaml.protocol.records.Payouts`) carries what binds it
    to the settlement (:meth:`settlement_fields`): the seats' addresses in seat
    order, the fingerprint of the request's Paillier key, and the chain the writer
    names (:attr:`TranscriptWriter.chain <deltaml.evidence.transcript.TranscriptWriter.chain>`).
    """

    def __init__(
        self,
        public_key: PublicKey,
        account: LocalAccount,
        party_id: str,
        writer: TranscriptWriter,
        addresses: Mapping[str, str] | None = None,
    ) -> None:
        self.key = key_id(public_key)
        self.public_key = public_key
        self.account = account
        self.party_id = party_id
        self.writer = writer
        self.addresses = dict(addresses) if addresses is not None else None

    @property
    def head(self) -> str:
        return self.writer.head

    def accept(self, party_id: str, reply: m.Message, kind: type[_M], *, sealed: bool) -> _M:
        """Check ``reply`` is a ``kind`` signed by ``party_id``; record it; return it."""
        if not isinstance(reply, kind):
            raise ProtocolError(f"expected {kind.__name__}, got {type(reply).__name__}")
        msg = reply
        body = message_body(msg, self.key)
        signer = recover_signer(body, getattr(msg, "signature", ""))
        if self.addresses is not None:
            expected = self.addresses.get(party_id)
            if expected is None or signer is None or signer.lower() != expected.lower():
                raise ProtocolError(f"{msg.kind} from {party_id} does not carry its signature")
        blobs = blobs_of(message_vectors(msg))
        self.writer.append(
            party=party_id,
            signer=signer or "",
            body=body,
            signature=getattr(msg, "signature", ""),
            public_blobs=None if sealed else blobs,
            sealed_blobs=blobs if sealed else None,
        )
        return msg

    def address_of(self, party_id: str) -> str:
        """The address ``party_id`` registered (empty in a run without accounts)."""
        return (self.addresses or {}).get(party_id, "")

    def settlement_fields(
        self, trainers: Iterable[str], validators: Iterable[str]
    ) -> dict[str, Any]:
        """What the final record adds so that it can be checked against the contract."""
        chain = self.writer.chain
        return {
            "seats": {
                "trainers": [self.address_of(t) for t in trainers],
                "validators": [self.address_of(v) for v in validators],
            },
            "key_fingerprint": key_fingerprint(self.public_key).hex(),
            "chain": None if chain is None else chain.to_json(),
        }

    def record(
        self,
        rec: Record,
        *,
        public: Iterable[EncryptedVector] = (),
        sealed: Iterable[EncryptedVector] = (),
    ) -> dict[str, Any]:
        """Sign and record one of the aggregator's own typed records."""
        body = record_body(rec, self.key)
        return self.writer.append(
            party=self.party_id,
            signer=self.account.address,
            body=body,
            signature=sign_body(self.account, body),
            public_blobs=blobs_of(public),
            sealed_blobs=blobs_of(sealed),
        )
