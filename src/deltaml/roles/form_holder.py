"""The buyer's part in the Gram metric (``metric_protocol: gram``, :mod:`deltaml.roles.forms`).

What the buyer decrypts, and only then:

- ``ũ`` of a batch the public rules allow (an evaluated round's ``metric-k`` with one
  vector of the model's length and the pair ``(0, 0)``, or — if the request measures
  contributions — ``contributions`` with one vector per seated trainer and the pairs
  ``(k, k)``, ``(k, Σ)``), once per batch, only as the remixer the public rule names
  signed it, with a valid proof that the remixer knows what it added to the
  aggregator's vectors: so every ``ũ`` carries the remixer's fresh uniform mask;
- the batch's forms, only as that remixer signed their sum over the buyer's own terms,
  and only if every value lies within what such a form can be.

``Enc(H)`` is the sum the buyer made itself of the validators' signed shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gmpy2
import numpy as np

from deltaml.crypto import PublicKey
from deltaml.crypto.knowledge import check_added_plaintexts
from deltaml.crypto.packing import PackingError
from deltaml.crypto.proofs import prove_decryption
from deltaml.crypto.quadform import EncryptedGram, key_holder_products
from deltaml.errors import DeltaMLValueError, ProtocolError
from deltaml.evidence.published import metric_value
from deltaml.evidence.signatures import hex_ints, vector_digest
from deltaml.learning.contributions import shapley_from_totals
from deltaml.learning.gram_metric import (
    contribution_pairs,
    encoded_relaxation,
    form_limit,
    form_real,
    gram_of,
    gram_vector,
    metric_pairs,
    opened_exponent,
    proof_context,
    proof_of,
    unflatten_pairs,
)
from deltaml.protocol import form_messages as fm
from deltaml.protocol.exact_messages import ring_vector
from deltaml.protocol.rules import evaluates, form_remixer, form_round
from deltaml.roles.evidence import sign_message

if TYPE_CHECKING:
    from deltaml.roles.buyer import ModelBuyer


@dataclass(frozen=True)
class _Batch:
    """What the buyer keeps of a batch between its products and its forms."""

    opened: list[list[int]]  # ũ
    raw: list[int]  # their packed plaintexts and randomness: the proof it publishes
    randomness: list[int]
    terms: str  # the digest of its terms, which the remixer's sum must be over
    remixer: str
    pairs: tuple[int, ...]
    exponent: int
    scale: int

    def to_json(self) -> dict[str, Any]:
        return {
            "opened": [hex_ints(row) for row in self.opened],
            "raw": hex_ints(self.raw),
            "randomness": hex_ints(self.randomness),
            "terms": self.terms,
            "remixer": self.remixer,
            "pairs": list(self.pairs),
            "exponent": self.exponent,
            "scale": self.scale,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Batch:
        return cls(
            [[int(v, 16) for v in row] for row in data["opened"]],
            [int(v, 16) for v in data["raw"]],
            [int(v, 16) for v in data["randomness"]],
            str(data["terms"]),
            str(data["remixer"]),
            tuple(int(v) for v in data["pairs"]),
            int(data["exponent"]),
            int(data["scale"]),
        )


class FormKeyHolder:
    """The buyer's Gram-metric state: ``Enc(H)``, and per batch what it opened."""

    def __init__(self, buyer: ModelBuyer) -> None:
        self.buyer = buyer
        self.gram: EncryptedGram | None = None
        self.rows = 0
        self.precision = 0
        self._opened: dict[str, _Batch] = {}
        self._answered: set[str] = set()

    @property
    def key(self) -> PublicKey:
        return self.buyer.public_key

    def total(self, msg: fm.GramTotalRequest) -> None:
        """Sum the validators' signed shares: every seated validator's, each once. (An
        aggregator that restarts asks again: the validators' same matrices, the same sum.)"""
        seats = self.buyer._seated()
        validators = seats.validator_ids
        if sorted(msg.validators) != sorted(validators) or not (
            len(msg.validators) == len(msg.shares) == len(msg.rows) == len(msg.signatures)
        ):
            raise ProtocolError("not one signed Gram matrix from each seated validator")
        owners = seats.owners()
        for party, share, rows, signature in zip(
            msg.validators, msg.shares, msg.rows, msg.signatures, strict=True
        ):
            if share.public_key != self.key or share.exponent != self.buyer.spec.precision_bits:
                raise ProtocolError(f"the Gram matrix of {party} has another key or precision")
            self.buyer._check_signed(fm.GramShare(share, rows, signature), party, owners)
        try:
            self.gram = EncryptedGram.total([gram_of(s) for s in msg.shares])
        except DeltaMLValueError as exc:
            raise ProtocolError(f"the validators' Gram matrices do not add up: {exc}") from None
        stats = self.buyer.stats
        if stats is None or self.gram.size != len(stats.means) + 2:
            raise ProtocolError("the Gram matrices do not have the model's size")
        self.rows = sum(msg.rows)
        self.precision = self.buyer.spec.precision_bits

    def _expected(self, label: str, scale: int) -> tuple[int, list[tuple[int, int]]]:
        """How many vectors, and which pairs, the public rules allow for ``label`` (and
        that ``scale`` is the trainers' count at most, or the encoded relaxation)."""
        spec = self.buyer.spec
        try:
            k = form_round(label)
        except DeltaMLValueError as exc:
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

    def products(self, msg: fm.FormRequest) -> fm.FormProducts:
        """Decrypt ``ũ`` of a batch the rules allow, as the named remixer signed and
        proved it; return ``Enc(Hũ)`` and the terms (``ũ`` is published with the forms)."""
        if self.gram is None:
            raise ProtocolError("no Gram matrix yet")
        if msg.label in self._opened or msg.label in self._answered:
            raise ProtocolError(f"{msg.label} was already answered")
        count, pairs = self._expected(msg.label, msg.scale)
        if unflatten_pairs(msg.pairs) != pairs or len(msg.inputs) != count:
            raise ProtocolError(f"{msg.label} asks for other vectors or pairs than the rules")
        buyer, masked = self.buyer, msg.masked
        named = form_remixer(buyer._seated().validator_ids, msg.label, buyer.spec.eval_every)
        buyer._check_signed(masked, msg.remixer, buyer._remixer(named, msg.remixer, msg.label))
        vectors = (*masked.vectors, *msg.inputs)
        exponent = msg.inputs[0].exponent
        if (
            len(masked.vectors) != count
            or any(len(v) != self.gram.size or v.public_key != self.key for v in vectors)
            or any(v.exponent != exponent for v in vectors)
            or exponent < buyer.spec.base_exponent
            or masked.input_digests != tuple(vector_digest(v) for v in msg.inputs)
        ):
            raise ProtocolError(f"the masked vectors of {msg.label} have the wrong shape")
        proof = proof_of(masked.proof) if len(masked.proof) == 3 else None
        flat_out = [c for v in masked.vectors for c in v.ciphertexts]
        if proof is None or not check_added_plaintexts(
            self.key,
            proof_context(msg.label, self.key),
            [c for v in msg.inputs for c in v.ciphertexts],
            flat_out,
            proof,
        ):
            raise ProtocolError(f"the remixer does not prove what it added to {msg.label}")
        # Packed at the layout exponent whose magnitude bound is 2^(w+2): two masks of
        # the public width w and a value far below it. Anything wider is not such a
        # sum, and is not published.
        try:
            opening, opened, products, terms = key_holder_products(
                buyer._private_key,
                self.gram,
                [v.ciphertexts for v in masked.vectors],
                pairs,
                opened_exponent(exponent, msg.scale),
            )
        except PackingError:
            raise ProtocolError(f"refusing {msg.label}: a masked value is out of range") from None
        raw, randomness = opening.plaintexts, opening.randomness
        reply = fm.FormProducts(
            msg.label,
            tuple(ring_vector(self.key, p) for p in products),
            ring_vector(self.key, terms),
            tuple(vector_digest(v) for v in masked.vectors),
            vector_digest(gram_vector(self.gram, self.precision)),
        )
        self._opened[msg.label] = _Batch(
            opened, raw, randomness, vector_digest(reply.terms), msg.remixer, msg.pairs,
            exponent, msg.scale,
        )  # fmt: skip
        return sign_message(reply, buyer.account, self.key)

    def open(self, msg: fm.FormOpenRequest) -> fm.FormValues:
        batch = self._opened.pop(msg.label, None)
        if batch is None:
            raise ProtocolError(f"{msg.label} has no products of the buyer's, or was opened")
        self._answered.add(msg.label)
        if msg.remixer != batch.remixer:
            raise ProtocolError(f"{msg.label} was combined by another party than its remixer")
        self.buyer._check_signed(msg.combined, msg.remixer, self.buyer._seated().owners())
        combined = msg.combined
        pairs = unflatten_pairs(batch.pairs)
        if combined.terms_digest != batch.terms or len(combined.values) != len(pairs):
            raise ProtocolError(f"the forms of {msg.label} are not over the buyer's own terms")
        raw, randomness = prove_decryption(self.buyer._private_key, combined.values.ciphertexts)
        values = [self.buyer._private_key.decode_signed(v) for v in raw]
        assert self.gram is not None
        count, size = len(batch.opened), self.gram.size
        for pair, value in zip(pairs, values, strict=True):
            if abs(value) > form_limit(
                pair, count, size, batch.exponent, batch.scale, self.gram.bound
            ):
                raise ProtocolError(f"refusing to publish {msg.label}: a form is out of range")
        results, base_sse = self._results(msg.label, values, batch)
        reply = fm.FormValues(
            msg.label,
            tuple(results),
            tuple(hex_ints(values)),
            tuple(hex_ints(raw)),
            tuple(hex_ints(randomness)),
            tuple(hex_ints(batch.raw)),
            tuple(hex_ints(batch.randomness)),
            base_sse,
        )
        return sign_message(reply, self.buyer.account, self.key)

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


def holder_snapshot(buyer: ModelBuyer) -> dict[str, object]:
    """What a buyer node keeps across a restart: its summed ``Enc(H)``, the batches it
    answered, and those it opened but has not decrypted the forms of."""
    holder = getattr(buyer, "_form_holder", None)
    if holder is None or holder.gram is None:
        return {}
    gram = holder.gram
    return {
        "forms": {
            "gram": hex_ints(gram.upper),
            "size": gram.size,
            "bound": f"{gram.bound:x}",
            "rows": holder.rows,
            "precision": holder.precision,
            "answered": sorted(holder._answered),
            "opened": {label: batch.to_json() for label, batch in holder._opened.items()},
        }
    }


def restore_holder(buyer: ModelBuyer, snapshot: Mapping[str, Any]) -> None:
    saved = snapshot.get("forms")
    if not isinstance(saved, dict):
        return
    holder = form_holder(buyer)
    holder.gram = EncryptedGram(
        buyer.public_key,
        tuple(gmpy2.mpz(int(v, 16)) for v in saved["gram"]),
        int(saved["size"]),
        int(saved["bound"], 16),
    )
    holder.rows, holder.precision = int(saved["rows"]), int(saved["precision"])
    holder._answered = {str(label) for label in saved["answered"]}
    holder._opened = {str(k): _Batch.from_json(v) for k, v in saved["opened"].items()}


def form_holder(buyer: ModelBuyer) -> FormKeyHolder:
    """The buyer's Gram-metric state (made on first use)."""
    holder = getattr(buyer, "_form_holder", None)
    if holder is None:
        holder = FormKeyHolder(buyer)
        buyer._form_holder = holder  # type: ignore[attr-defined]
    return holder
