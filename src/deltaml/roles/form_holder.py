"""The buyer's part in the Gram metric (``metric_protocol: gram``, :mod:`deltaml.roles.forms`).

The buyer holds the key, so it never receives a validator's ``Enc(H_v)``, their sum or
anything computed from them but the finished forms: it gets the validators' signed
notes of their shares (digest, rows, bound) and checks that each batch's two mask
holders signed that they summed exactly those shares. What it decrypts, and only then:

- ``ũ`` of a batch the public rules allow (an evaluated round's ``metric-k`` with one
  vector of the model's length and the pair ``(0, 0)``, or — if the request measures
  contributions — ``contributions`` with one vector per seated trainer and the pairs
  ``(k, k)``, ``(k, Σ)``), once per batch, only as the second holder the public rule
  names signed it, with a valid proof that it knows what it added to the first
  holder's signed vectors: so every ``ũ`` carries its fresh uniform mask;
- the batch's forms, only as that holder signed their sum over the buyer's own ``ũ``,
  and only if every value lies within what such a form can be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from deltaml.crypto import PublicKey
from deltaml.crypto.knowledge import check_added_plaintexts
from deltaml.crypto.packing import PackingError
from deltaml.crypto.proofs import prove_decryption
from deltaml.crypto.quadform import open_masked
from deltaml.errors import ProtocolError
from deltaml.evidence.published import metric_value
from deltaml.evidence.signatures import (
    digest_ref,
    hex_ints,
    key_id,
    recover_signer,
    vector_digest,
)
from deltaml.learning.contributions import shapley_from_totals
from deltaml.learning.gram_metric import (
    contribution_pairs,
    encoded_relaxation,
    form_limit,
    form_real,
    metric_pairs,
    opened_digest,
    opened_exponent,
    proof_context,
    proof_of,
    shares_digest,
    unflatten_pairs,
)
from deltaml.protocol import form_messages as fm
from deltaml.protocol import form_records as fr
from deltaml.protocol.rules import evaluates, form_holders, form_round
from deltaml.roles.evidence import record_body, sign_message

if TYPE_CHECKING:
    from deltaml.roles.buyer import ModelBuyer


@dataclass(frozen=True)
class _Batch:
    """What the buyer keeps of a batch between its ``ũ`` and its forms."""

    opened: str  # the digest of its signed ũ, which the holders' sums must be over
    count: int
    first: str  # the first holder ("": the aggregator)
    remixer: str
    pairs: tuple[int, ...]
    exponent: int
    scale: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Batch:
        return cls(**{**data, "pairs": tuple(data["pairs"])})


class FormKeyHolder:
    """The buyer's Gram-metric state: the validators' notes, and per batch what it opened."""

    def __init__(self, buyer: ModelBuyer) -> None:
        self.buyer = buyer
        self.gram = ""  # shares_digest of the validators' shares, once their notes check
        self.size = 0
        self.rows = 0
        self.bound = 0
        self.precision = 0
        self._opened: dict[str, _Batch] = {}
        self._answered: set[str] = set()

    @property
    def key(self) -> PublicKey:
        return self.buyer.public_key

    def notes(self, msg: fm.GramNotesRequest) -> None:
        """Check every seated validator signed its note, each once. (An aggregator that
        restarts sends them again: the validators' same matrices, the same notes.)"""
        seats = self.buyer._seated()
        validators = seats.validator_ids
        count = len(msg.validators)
        if list(msg.validators) != list(validators) or not (
            count == len(msg.digests) == len(msg.rows) == len(msg.bounds) == len(msg.signatures)
        ):
            raise ProtocolError("not one signed Gram matrix from each seated validator, in order")
        stats = self.buyer.stats
        if stats is None:
            raise ProtocolError("no statistics yet")
        size = len(stats.means) + 2
        precision = self.buyer.spec.precision_bits
        owners, key = seats.owners(), key_id(self.key)
        bound = 0
        for party, digest, rows, note, signature in zip(
            msg.validators, msg.digests, msg.rows, msg.bounds, msg.signatures, strict=True
        ):
            try:
                claimed = int(note, 16)
            except ValueError:
                claimed = -1
            if rows < 1 or not 0 <= claimed <= self.key.max_int:
                raise ProtocolError(f"the Gram note of {party} has no rows or no bound")
            ref = digest_ref(digest, size * (size + 1) // 2, precision)
            body = record_body(fr.GramShare(gram=ref, rows=rows, bound=note), key)
            signer = recover_signer(body, signature)
            if signer is None or signer.lower() != owners.get(party, "").lower():
                raise ProtocolError(f"the Gram note of {party} does not carry its signature")
            bound += claimed
        self.gram, self.size, self.precision = shares_digest(msg.digests), size, precision
        self.rows, self.bound = sum(msg.rows), bound

    def _expected(self, label: str, scale: int) -> tuple[int, list[tuple[int, int]]]:
        """How many vectors, and which pairs, the public rules allow for ``label`` (and
        that ``scale`` is the trainers' count at most, or the encoded relaxation)."""
        spec = self.buyer.spec
        try:
            k = form_round(label)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        if k is None:
            if not spec.contributions:
                raise ProtocolError("this request did not ask for contributions")
            if scale != encoded_relaxation(spec.relaxation, spec.precision_bits):
                raise ProtocolError("the contributions' vectors are not scaled by the relaxation")
            m = len(self.buyer._seated().trainer_ids)
            return m, contribution_pairs(m)
        if not evaluates(k, spec):
            raise ProtocolError(f"round {k} has no evaluation in this request's spec")
        if not 1 <= scale <= len(self.buyer._seated().trainer_ids):
            raise ProtocolError("the metric's scale is not a count of trainers")
        return 1, metric_pairs()

    def _check_holders(self, msg: fm.FormRequest) -> None:
        """Both holders are the rule's, signed, over the validators' shares; the second's
        vectors are the first's plus what it proves it added."""
        buyer = self.buyer
        seats = buyer._seated()
        named = form_holders(seats.validator_ids, msg.label, buyer.spec.eval_every)
        if named is None or msg.holders != (named[0] or "", named[1]):
            raise ProtocolError(f"{msg.label} was not masked by the holders the rule names")
        first, second = msg.first, msg.masked
        if named[0] is not None:
            buyer._check_signed(first, named[0], seats.owners())
        buyer._check_signed(second, named[1], seats.owners())
        if first.gram != self.gram or second.gram != self.gram:
            raise ProtocolError(f"the holders of {msg.label} did not sum the validators' shares")
        if second.input_digests != tuple(vector_digest(v) for v in first.vectors):
            raise ProtocolError(f"the second holder of {msg.label} masked other vectors")
        proof = proof_of(second.proof) if len(second.proof) == 3 else None
        if proof is None or not check_added_plaintexts(
            self.key,
            proof_context(msg.label, self.key),
            [c for v in first.vectors for c in v.ciphertexts],
            [c for v in second.vectors for c in v.ciphertexts],
            proof,
        ):
            raise ProtocolError(f"the remixer does not prove what it added to {msg.label}")

    def opened(self, msg: fm.FormRequest) -> fm.FormOpened:
        """Decrypt ``ũ`` of a batch the rules allow, as the named holders signed and
        proved it, and publish it with the proof."""
        if not self.gram:
            raise ProtocolError("no validators' Gram notes yet")
        if msg.label in self._opened or msg.label in self._answered:
            raise ProtocolError(f"{msg.label} was already answered")
        count, pairs = self._expected(msg.label, msg.scale)
        if unflatten_pairs(msg.pairs) != pairs or len(msg.first.vectors) != count:
            raise ProtocolError(f"{msg.label} asks for other vectors or pairs than the rules")
        vectors = (*msg.masked.vectors, *msg.first.vectors)
        exponent = vectors[0].exponent
        if (
            len(msg.masked.vectors) != count
            or any(len(v) != self.size or v.public_key != self.key for v in vectors)
            or any(v.exponent != exponent for v in vectors)
            or exponent < self.buyer.spec.base_exponent
        ):
            raise ProtocolError(f"the masked vectors of {msg.label} have the wrong shape")
        self._check_holders(msg)
        # Packed at the layout exponent whose magnitude bound is 2^(w+2): two masks of
        # the public width w and a value far below it. Anything wider is not such a
        # sum, and is not published.
        try:
            opening, opened = open_masked(
                self.buyer._private_key,
                [v.ciphertexts for v in msg.masked.vectors],
                opened_exponent(exponent, msg.scale),
            )
        except PackingError:
            raise ProtocolError(f"refusing {msg.label}: a masked value is out of range") from None
        reply = fm.FormOpened(
            msg.label,
            tuple(hex_ints([x for row in opened for x in row])),
            tuple(hex_ints(opening.plaintexts)),
            tuple(hex_ints(opening.randomness)),
            tuple(vector_digest(v) for v in msg.masked.vectors),
            tuple(vector_digest(v) for v in msg.first.vectors),
        )
        self._opened[msg.label] = _Batch(
            opened_digest(reply),
            count,
            msg.holders[0],
            msg.holders[1],
            msg.pairs,
            exponent,
            msg.scale,
        )
        return sign_message(reply, self.buyer.account, self.key)

    def open(self, msg: fm.FormOpenRequest) -> fm.FormValues:
        batch = self._opened.pop(msg.label, None)
        if batch is None:
            raise ProtocolError(f"{msg.label} has no ũ of the buyer's, or was opened")
        self._answered.add(msg.label)
        if msg.remixer != batch.remixer:
            raise ProtocolError(f"{msg.label} was combined by another party than its remixer")
        self.buyer._check_signed(msg.combined, msg.remixer, self.buyer._seated().owners())
        combined = msg.combined
        pairs = unflatten_pairs(batch.pairs)
        if combined.opened_digest != batch.opened or len(combined.values) != len(pairs):
            raise ProtocolError(f"the forms of {msg.label} are not over the buyer's own ũ")
        self._check_exchange(msg, batch, len(pairs))
        raw, randomness = prove_decryption(self.buyer._private_key, combined.values.ciphertexts)
        values = [self.buyer._private_key.decode_signed(v) for v in raw]
        for pair, value in zip(pairs, values, strict=True):
            limit = form_limit(
                pair, batch.count, self.size, batch.exponent, batch.scale, self.bound
            )
            if abs(value) > limit:
                raise ProtocolError(f"refusing to publish {msg.label}: a form is out of range")
        results, base_sse = self._results(msg.label, values, batch)
        reply = fm.FormValues(
            msg.label,
            tuple(results),
            tuple(hex_ints(values)),
            tuple(hex_ints(raw)),
            tuple(hex_ints(randomness)),
            base_sse,
        )
        return sign_message(reply, self.buyer.account, self.key)

    def _check_exchange(self, msg: fm.FormOpenRequest, batch: _Batch, pairs: int) -> None:
        """What passed between the holders through the aggregator is what they signed:
        the remixer's sums are over the first holder's share, computed with the
        remixer's ``Enc(H a²)`` — else the aggregator could add a ciphertext of its own
        to either in transit, and a form would carry it."""
        if msg.combined.share_digest != msg.share_digest:
            raise ProtocolError(f"the forms of {msg.label} are not over the first holder's share")
        if not batch.first:  # the aggregator holds the first mask: its share is its own
            return
        owners, key = self.buyer._seated().owners(), key_id(self.key)
        signed = [
            (fr.FormCross(msg.label, [digest_ref(d, self.size) for d in msg.cross_digests]),
             batch.remixer, msg.cross_signature),
            (fr.FormShare(msg.label, batch.opened, list(msg.share_cross),
                          digest_ref(msg.share_digest, pairs)), batch.first, msg.share_signature),
        ]  # fmt: skip
        for rec, party, signature in signed:
            signer = recover_signer(record_body(rec, key), signature)
            if signer is None or signer.lower() != owners.get(party, "").lower():
                raise ProtocolError(
                    f"the {rec.KIND} of {msg.label} does not carry {party}'s signature"
                )
        if (
            tuple(msg.share_cross) != tuple(msg.cross_digests)
            or len(msg.cross_digests) != batch.count
        ):
            raise ProtocolError(
                f"the first share of {msg.label} is not over the remixer's products"
            )

    def _results(self, label: str, values: list[int], batch: _Batch) -> tuple[list[float], float]:
        buyer = self.buyer
        reals = [form_real(v, batch.scale, batch.exponent, self.precision) for v in values]
        k = form_round(label)
        if k is not None:
            assert buyer.stats is not None
            sse = reals[0]
            buyer._sse[k] = sse
            value = metric_value(buyer.model, sse, self.rows, buyer.stats)
            buyer.metrics[k] = value
            return [value], 0.0
        base = buyer._sse.get(0)
        if base is None:
            raise ProtocolError("no initial metric to measure contributions against")
        m = len(reals) // 2
        phi = shapley_from_totals(np.array(reals[:m]), np.array(reals[m:]), sum(reals[m:]), base)
        return [float(v) for v in phi], base


_SAVED = ("gram", "size", "rows", "bound", "precision")


def holder_snapshot(buyer: ModelBuyer) -> dict[str, object]:
    """What a buyer node keeps across a restart: the validators' notes, the batches it
    answered, and those it opened but has not decrypted the forms of."""
    holder = getattr(buyer, "_form_holder", None)
    if holder is None or not holder.gram:
        return {}
    return {
        "forms": {
            **{name: getattr(holder, name) for name in _SAVED},
            "answered": sorted(holder._answered),
            "opened": {label: batch.to_json() for label, batch in holder._opened.items()},
        }
    }


def restore_holder(buyer: ModelBuyer, snapshot: Mapping[str, Any]) -> None:
    saved = snapshot.get("forms")
    if not isinstance(saved, dict):
        return
    holder = form_holder(buyer)
    holder.gram = str(saved["gram"])
    holder.size, holder.rows = int(saved["size"]), int(saved["rows"])
    holder.bound, holder.precision = int(saved["bound"]), int(saved["precision"])
    holder._answered = {str(label) for label in saved["answered"]}
    holder._opened = {str(k): _Batch.from_json(v) for k, v in saved["opened"].items()}


def form_holder(buyer: ModelBuyer) -> FormKeyHolder:
    """The buyer's Gram-metric state (made on first use)."""
    holder = getattr(buyer, "_form_holder", None)
    if holder is None:
        holder = FormKeyHolder(buyer)
        buyer._form_holder = holder  # type: ignore[attr-defined]
    return holder
