"""The Gram metric between the parties (``metric_protocol: gram``).

The validators each send ``Enc(H_v)`` once (:func:`collect_gram`): to the aggregator,
which hands them to each batch's two mask holders and hands the buyer only their signed
notes. Every later batch of forms — an evaluation, or the contributions' ``2m``
numbers — costs each mask holder one ``Enc(H·x)`` per vector and the aggregator and
the buyer ``O(D)`` per vector, whatever the number of validators
(:mod:`deltaml.crypto.quadform`):

1. the first holder (the validator after the remixer, or the aggregator when there is
   one validator) and the second (the remixer) each add their masks, with a proof
   (``FormMasked``);
2. the buyer decrypts ``ũ`` and publishes it with its proof (``FormOpened``);
3. the first holder computes ``Enc(H(ũ − a¹))`` while the second computes ``Enc(H a²)``
   (``FormCross``); the first computes its share (``FormShare``), the second adds its
   own and re-randomizes (``FormCombined``);
4. the buyer decrypts the sums with proofs (``FormValues``).

The holders' side is :class:`MaskHolder`, the buyer's :mod:`deltaml.roles.form_holder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.crypto import quadform as qf
from deltaml.crypto.quadform import EncryptedGram, MaskShare, Pair
from deltaml.errors import DeltaMLValueError, ProtocolError
from deltaml.evidence.signatures import key_id, recover_signer, vector_digest, vector_ref
from deltaml.learning.gram_metric import (
    flatten_pairs,
    form_mask_bits,
    gram_of,
    gram_vector,
    opened_digest,
    opened_values,
    proof_context,
    proof_fields,
    shares_digest,
    unflatten_pairs,
    validator_gram,
)
from deltaml.protocol import form_messages as fm
from deltaml.protocol import form_records as fr
from deltaml.protocol.exact_messages import ring_vector
from deltaml.protocol.messages import TrainingSpec
from deltaml.protocol.rules import form_holders
from deltaml.roles.evidence import message_body, message_record

if TYPE_CHECKING:
    import numpy as np

    from deltaml.roles.aggregator_base import AggregatorBase


def ciphertexts(vectors: Sequence[EncryptedVector]) -> list[list[int]]:
    return [list(v.ciphertexts) for v in vectors]


def vectors_like(
    cts: Sequence[Sequence[int]], like: Sequence[EncryptedVector], bits: int
) -> tuple[EncryptedVector, ...]:
    """Raw ciphertexts as vectors of ``like``'s key and exponents, bounded by ``2^bits``."""
    return tuple(
        EncryptedVector(v.public_key, list(c), v.exponent, 1 << bits)
        for c, v in zip(cts, like, strict=True)
    )


# -- the validator's side -----------------------------------------------------------
def gram_share(key: PublicKey, factor: np.ndarray, precision_bits: int, rows: int) -> fm.GramShare:
    gram = EncryptedGram.encrypt(key, validator_gram(factor, precision_bits))
    return fm.GramShare(gram_vector(gram, precision_bits), rows, f"{gram.bound:x}")


def summed_shares(shares: Sequence[fm.GramShare], key: PublicKey, precision: int) -> EncryptedGram:
    """``Enc(H)``, the sum of ``shares``."""
    if any(s.gram.public_key != key or s.gram.exponent != precision for s in shares):
        raise ProtocolError("a Gram matrix under another key or at another precision")
    try:
        return EncryptedGram.total([gram_of(s.gram) for s in shares])
    except DeltaMLValueError as exc:
        raise ProtocolError(f"the validators' Gram matrices do not add up: {exc}") from None


@dataclass
class _Held:
    """What a holder keeps of a batch from its masking to its share."""

    share: MaskShare
    outputs: tuple[str, ...]  # digests of the vectors it returned
    cross: list[list[int]] | None = None  # the second holder's Enc(H a), once asked for
    #: The first holder's v = ũ − a and Enc(Hv), once it has the buyer's ũ (its digest).
    first: tuple[list[list[int]], list[list[int]]] | None = None
    opened: str = ""


class MaskHolder:
    """A mask holder's part in a batch: one mask per label, kept from the masking to its
    share, then dropped. ``buyer`` is the request's buyer's address (from the chain, in
    a marketplace): a holder works only on a ``ũ`` the buyer signed — a ``ũ`` of the
    aggregator's choosing would have the forms publish ``H`` at chosen points. The
    aggregator, holding the first mask when there is one validator, passes ``None``."""

    def __init__(self, buyer: str | None = None) -> None:
        self.buyer = buyer
        self.gram: EncryptedGram | None = None
        self.gram_digest = ""
        self._held: dict[str, _Held] = {}
        self._done: set[str] = set()

    def mask(
        self, msg: fm.FormMaskRequest, key: PublicKey, spec: TrainingSpec, scale: int
    ) -> fm.FormMasked:
        """Add this holder's masks to a batch, with the proof.

        ``scale`` is the one the rules give the batch (the trainers' count, the encoded
        relaxation): a smaller one named by the aggregator would narrow the mask."""
        if msg.label in self._done:
            raise ProtocolError(f"already masked {msg.label}")
        if not msg.vectors or any(v.public_key != key for v in msg.vectors):
            raise ProtocolError("no vectors to mask, or vectors under another key")
        if msg.shares:  # (the buyer checks which shares each holder summed)
            digest = shares_digest([vector_digest(s.gram) for s in msg.shares])
            if digest != self.gram_digest:
                self.gram = summed_shares(msg.shares, key, spec.precision_bits)
                self.gram_digest = digest
        if self.gram is None:
            raise ProtocolError("no validator's Gram matrix to evaluate the forms with")
        size = len(msg.vectors[0])
        if any(len(v) != size for v in msg.vectors) or self.gram.size != size:
            raise ProtocolError("the vectors and the Gram matrix differ in size")
        exponent = msg.vectors[0].exponent
        if exponent < spec.base_exponent or any(v.exponent != exponent for v in msg.vectors):
            raise ProtocolError("vectors below the base exponent, or at different exponents")
        if msg.scale != scale:
            raise ProtocolError(
                f"{msg.label} is named at scale {msg.scale}; the rules give {scale}"
            )
        bits = form_mask_bits(exponent, scale)
        share = MaskShare.draw(len(msg.vectors), size, bits)
        masked, proof = qf.add_masks_with_proof(
            key, proof_context(msg.label, key), ciphertexts(msg.vectors), share
        )
        out = vectors_like(masked, msg.vectors, bits + 1)
        self._held[msg.label] = _Held(share, tuple(vector_digest(v) for v in out))
        self._done.add(msg.label)
        return fm.FormMasked(
            msg.label,
            out,
            tuple(vector_digest(v) for v in msg.vectors),
            proof_fields(proof),
            self.gram_digest,
        )

    def _batch(self, label: str) -> _Held:
        held = self._held.get(label)
        if held is None:
            raise ProtocolError(f"nothing masked for {label}, or its share already given")
        return held

    def _products(self, held: _Held) -> list[list[int]]:
        assert self.gram is not None
        if held.cross is None:
            held.cross = self.gram.times(held.share.masks)
        return held.cross

    def cross(self, msg: fm.FormCrossRequest, key: PublicKey) -> fm.FormCross:
        """As the second holder: ``Enc(H a²_k)`` for the first holder's cross terms."""
        products = self._products(self._batch(msg.label))
        return fm.FormCross(msg.label, tuple(ring_vector(key, c) for c in products))

    def signed_by_buyer(self, opened: fm.FormOpened, key: PublicKey) -> bool:
        """(The aggregator, as the first holder, takes its own routing's word.)"""
        if self.buyer is None:
            return True
        signer = recover_signer(message_body(opened, key_id(key)), opened.signature)
        return signer is not None and signer.lower() == self.buyer.lower()

    def _check_opened(
        self, opened: fm.FormOpened, held: _Held, key: PublicKey, first: bool
    ) -> None:
        """``ũ`` is as the buyer signed it, of this holder's own vectors."""
        if not self.signed_by_buyer(opened, key):
            raise ProtocolError(f"the ũ of {opened.label} is not signed by the buyer")
        mine = opened.first_digests if first else opened.masked_digests
        if tuple(mine) != held.outputs:
            raise ProtocolError(f"the buyer's ũ of {opened.label} is not of this holder's vectors")

    def prepare(self, msg: fm.FormPrepareRequest, key: PublicKey) -> None:
        """As the first holder: ``v = ũ − a¹`` and ``Enc(Hv)``, from the buyer's ``ũ``."""
        held = self._batch(msg.label)
        if held.first is None:
            self._check_opened(msg.opened, held, key, first=True)
            assert self.gram is not None
            try:
                opened = opened_values(msg.opened.opened, len(held.outputs), self.gram.size)
            except DeltaMLValueError as exc:
                raise ProtocolError(str(exc)) from None
            held.first = qf.first_products(self.gram, held.share, opened)
            held.opened = opened_digest(msg.opened)

    def first_share(self, msg: fm.FormShareRequest, key: PublicKey) -> fm.FormShare:
        """As the first holder: its share of every pair."""
        self.prepare(fm.FormPrepareRequest(msg.label, msg.opened), key)
        held = self._batch(msg.label)
        if held.opened != opened_digest(msg.opened):
            raise ProtocolError(f"another ũ of {msg.label} than the one prepared with")
        assert held.first is not None
        pairs = unflatten_pairs(msg.pairs)
        cross = ciphertexts(msg.cross.products)
        if msg.cross.label != msg.label or len(cross) != len(held.share.masks):
            raise ProtocolError(f"the second holder's products are not of {msg.label}")
        try:
            values = qf.first_share(key, *held.first, cross, pairs)
        except DeltaMLValueError as exc:
            raise ProtocolError(str(exc)) from None
        del self._held[msg.label]
        return fm.FormShare(
            msg.label,
            ring_vector(key, values),
            opened_digest(msg.opened),
            tuple(vector_digest(v) for v in msg.cross.products),
        )

    def combine(self, msg: fm.FormCombineRequest, key: PublicKey) -> fm.FormCombined:
        """As the second holder: both shares added, re-randomized."""
        held = self._batch(msg.label)
        self._check_opened(msg.opened, held, key, first=False)
        pairs = unflatten_pairs(msg.pairs)
        if (
            msg.share.label != msg.label
            or msg.share.opened_digest != opened_digest(msg.opened)
            or len(msg.share.share) != len(pairs)
        ):
            raise ProtocolError(f"the first holder's share is not of {msg.label}'s ũ")
        try:
            mine = qf.second_share(key, held.share, self._products(held), pairs)
        except DeltaMLValueError as exc:
            raise ProtocolError(str(exc)) from None
        del self._held[msg.label]
        values = qf.combine(key, msg.share.share.ciphertexts, mine)
        return fm.FormCombined(
            msg.label,
            ring_vector(key, values),
            opened_digest(msg.opened),
            vector_digest(msg.share.share),
        )


# -- the aggregator's side ------------------------------------------------------------
def collect_gram(agg: AggregatorBase, validators: list[str]) -> tuple[fm.GramShare, ...]:
    """Every validator's ``Enc(H_v)``, checked and recorded sealed; the buyer gets only
    their signed notes (digest, rows, bound)."""
    ev = agg.evidence
    replies = agg.transport.request_all([(v, fm.GramShareRequest()) for v in validators])
    shares = tuple(
        ev.accept(v, r, fm.GramShare, sealed=True) for v, r in zip(validators, replies, strict=True)
    )
    if any(s.rows < 1 for s in shares):
        raise ProtocolError("a validator's Gram matrix has no rows")
    agg.transport.request(
        agg.buyer_id,
        fm.GramNotesRequest(
            tuple(validators),
            tuple(vector_digest(s.gram) for s in shares),
            tuple(s.rows for s in shares),
            tuple(s.bound for s in shares),
            tuple(s.signature for s in shares),
        ),
    )
    return shares


def _own(agg: AggregatorBase, msg: fm.FormMasked | fm.FormShare, sealed: bool) -> None:
    """Record a step the aggregator took as the first holder, as its own record."""
    vectors = list(msg.vectors) if isinstance(msg, fm.FormMasked) else [msg.share]
    if sealed:
        agg.evidence.record(message_record(msg), sealed=vectors)
    else:
        agg.evidence.record(message_record(msg), public=vectors)


def evaluate_forms(
    agg: AggregatorBase,
    shares: tuple[fm.GramShare, ...],
    spec: TrainingSpec,
    validators: list[str],
    label: str,
    vectors: list[EncryptedVector],
    pairs: list[Pair],
    scale: int,
) -> fm.FormValues:
    """One batch of forms through the two holders the rule names and the buyer; every
    step recorded."""
    ev, key = agg.evidence, vectors[0].public_key
    holders = form_holders(validators, label, spec.eval_every)
    if holders is None:
        raise ProtocolError(f"no validator to hold a mask of {label}")
    first, second = holders
    flat = flatten_pairs(pairs)
    ev.record(
        fr.FormMask(
            label=label,
            scale=scale,
            pairs=list(flat),
            holders=[first or "", second],
            vectors=[vector_ref(v) for v in vectors],
        ),
        sealed=vectors,
    )

    # The Gram shares go to a holder once per run (a holder keeps their sum).
    def mask_request(holder: str, inputs: Sequence[EncryptedVector]) -> fm.FormMaskRequest:
        sent = holder in agg.gram_holders
        agg.gram_holders.add(holder)
        return fm.FormMaskRequest(label, tuple(inputs), scale, () if sent else shares)

    if first is None:
        masked1 = agg.form_holder.mask(mask_request("", vectors), key, spec, scale)
        _own(agg, masked1, sealed=False)
    else:
        reply = agg.transport.request(first, mask_request(first, vectors))
        masked1 = ev.accept(first, reply, fm.FormMasked, sealed=False)
    _check_masked(masked1, label, vectors, first or "the aggregator")
    reply = agg.transport.request(second, mask_request(second, masked1.vectors))
    masked2 = ev.accept(second, reply, fm.FormMasked, sealed=False)
    _check_masked(masked2, label, masked1.vectors, second)
    reply = agg.transport.request(
        agg.buyer_id, fm.FormRequest(label, masked1, masked2, (first or "", second), flat, scale)
    )
    opened = ev.accept(agg.buyer_id, reply, fm.FormOpened, sealed=False)
    if opened.label != label:
        raise ProtocolError(f"the buyer opened another batch than {label}")
    # Enc(H(ũ − a¹)) and Enc(H a²), each holder's one product per vector, at once.
    prepare = fm.FormPrepareRequest(label, opened)
    if first is None:
        agg.form_holder.prepare(prepare, key)
        reply = agg.transport.request(second, fm.FormCrossRequest(label))
    else:
        _, reply = agg.transport.request_all(
            [(first, prepare), (second, fm.FormCrossRequest(label))]
        )
    cross = ev.accept(second, reply, fm.FormCross, sealed=True)
    if cross.label != label or len(cross.products) != len(vectors):
        raise ProtocolError(f"{second} returned other products than {label}'s")
    share_request = fm.FormShareRequest(label, opened, cross, flat)
    if first is None:
        share = agg.form_holder.first_share(share_request, key)
        _own(agg, share, sealed=True)
    else:
        share = ev.accept(
            first, agg.transport.request(first, share_request), fm.FormShare, sealed=True
        )
    reply = agg.transport.request(second, fm.FormCombineRequest(label, opened, share, flat))
    combined = ev.accept(second, reply, fm.FormCombined, sealed=False)
    if combined.label != label or combined.share_digest != vector_digest(share.share):
        raise ProtocolError(f"{second} combined another share than {label}'s")
    reply = agg.transport.request(
        agg.buyer_id,
        fm.FormOpenRequest(
            label, combined, second, vector_digest(share.share), share.cross_digests,
            share.signature, tuple(vector_digest(v) for v in cross.products), cross.signature,
        ),
    )  # fmt: skip
    values = ev.accept(agg.buyer_id, reply, fm.FormValues, sealed=False)
    if values.label != label:
        raise ProtocolError(f"the buyer's values answer another batch than {label}")
    return values


def _check_masked(
    masked: fm.FormMasked, label: str, inputs: Sequence[EncryptedVector], holder: str
) -> None:
    if masked.label != label or masked.input_digests != tuple(vector_digest(v) for v in inputs):
        raise ProtocolError(f"{holder} masked other vectors than {label}'s")
    if len(masked.vectors) != len(inputs):
        raise ProtocolError(f"{holder} returned the wrong number of vectors")
