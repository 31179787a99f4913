"""The Gram metric between the parties (``metric_protocol: gram``).

The validators each send ``Enc(H_v)`` once (:func:`collect_gram`); every later batch of
forms — an evaluation, or the contributions' ``2m`` numbers — costs the aggregator, the
remixer and the buyer ``O(K·D²)`` exponentiations for ``K`` vectors of ``D`` entries,
whatever the number of validators (:mod:`deltaml.crypto.quadform`):

1. the aggregator masks the vectors (``FormMask``, its masks secret) and the remixer
   the validator the public rule names — adds its own, with a proof (``FormMasked``);
2. the buyer decrypts ``ũ`` and returns ``Enc(Hũ)`` and its terms (``FormProducts``);
3. the aggregator adds its share (``FormShare``), the remixer its own and sums
   (``FormCombined``);
4. the buyer decrypts the sums and ``ũ`` with proofs (``FormValues``).

The owner's side is :class:`FormRemixer`, the buyer's :mod:`deltaml.roles.form_holder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.crypto.quadform import (
    EncryptedGram,
    MaskShare,
    Pair,
    add_masks,
    add_masks_with_proof,
    combine,
    correction,
)
from deltaml.errors import ProtocolError
from deltaml.evidence.signatures import key_id, recover_signer, vector_digest, vector_ref
from deltaml.learning.gram_metric import (
    flatten_pairs,
    form_mask_bits,
    gram_of,
    gram_vector,
    proof_context,
    proof_fields,
    unflatten_pairs,
    validator_gram,
)
from deltaml.protocol import form_messages as fm
from deltaml.protocol import form_records as fr
from deltaml.protocol.exact_messages import ring_vector
from deltaml.protocol.messages import TrainingSpec
from deltaml.protocol.rules import form_remixer
from deltaml.roles.evidence import message_body

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
    return fm.GramShare(gram_vector(gram, precision_bits), rows)


class FormRemixer:
    """A validator's part as the remixer of batches: one mask per label, kept from the
    masking to the combining, then dropped."""

    def __init__(self, buyer: str | None = None) -> None:
        self.buyer = buyer
        self._shares: dict[str, tuple[MaskShare, EncryptedGram, list[list[int]]]] = {}
        self._done: set[str] = set()

    def mask(
        self, msg: fm.FormMaskRequest, key: PublicKey, base_exponent: int, scale: int
    ) -> fm.FormMasked:
        """Add this holder's masks to a batch the aggregator masked, with the proof.

        ``scale`` is the one the rules give the batch (the trainers' count, the encoded
        relaxation): a smaller one named by the aggregator would narrow the mask that
        hides the vectors from it."""
        if msg.label in self._done or msg.label in self._shares:
            raise ProtocolError(f"already masked {msg.label}")
        if not msg.vectors or any(v.public_key != key for v in msg.vectors):
            raise ProtocolError("no vectors to mask, or vectors under another key")
        gram = gram_of(msg.gram)
        size = len(msg.vectors[0])
        if any(len(v) != size for v in msg.vectors) or gram.size != size:
            raise ProtocolError("the vectors and the Gram matrix differ in size")
        exponent = msg.vectors[0].exponent
        if exponent < base_exponent or any(v.exponent != exponent for v in msg.vectors):
            raise ProtocolError("vectors below the base exponent, or at different exponents")
        if msg.scale != scale:
            raise ProtocolError(
                f"{msg.label} is named at scale {msg.scale}; the rules give {scale}"
            )
        bits = form_mask_bits(exponent, scale)
        share = MaskShare.draw(len(msg.vectors), size, bits)
        masked, proof = add_masks_with_proof(
            key, proof_context(msg.label, key), ciphertexts(msg.vectors), share
        )
        own = gram.times(share.masks)
        self._shares[msg.label] = (share, gram, own)
        self._done.add(msg.label)
        return fm.FormMasked(
            msg.label,
            vectors_like(masked, msg.vectors, bits + 1),
            tuple(ring_vector(key, c) for c in own),
            tuple(vector_digest(v) for v in msg.vectors),
            proof_fields(proof),
        )

    def signed_by_buyer(self, products: fm.FormProducts, key: PublicKey) -> bool:
        """Products other than the buyer's would have this holder's share carry a chosen
        multiple of its own mask into a published value: it takes only the buyer's."""
        signer = recover_signer(message_body(products, key_id(key)), products.signature)
        return (
            self.buyer is not None and signer is not None and signer.lower() == self.buyer.lower()
        )

    def combine(self, msg: fm.FormCombineRequest, key: PublicKey) -> fm.FormCombined:
        if not self.signed_by_buyer(msg.products, key):
            raise ProtocolError(f"the products of {msg.label} are not signed by the buyer")
        held = self._shares.pop(msg.label, None)
        if held is None:
            raise ProtocolError(f"nothing masked for {msg.label}, or already combined")
        share, gram, own = held
        pairs = unflatten_pairs(msg.pairs)
        products = ciphertexts(msg.products.products)
        if len(products) != len(share.masks) or len(msg.products.terms) != len(pairs):
            raise ProtocolError("the buyer's products do not match the masked vectors")
        if len(msg.share) != len(pairs):
            raise ProtocolError("the aggregator's share does not match the pairs")
        mine = correction(key, gram, share, own, products, pairs, None)
        values = combine(key, msg.products.terms.ciphertexts, msg.share.ciphertexts, mine)
        return fm.FormCombined(
            msg.label,
            ring_vector(key, values),
            vector_digest(msg.products.terms),
            vector_digest(msg.share),
        )


# -- the aggregator's side ------------------------------------------------------------
def collect_gram(agg: AggregatorBase, validators: list[str]) -> EncryptedGram:
    """Every validator's ``Enc(H_v)``, checked and recorded; their sum, which the buyer
    makes itself from the signed shares it is handed too."""
    ev = agg.evidence
    replies = agg.transport.request_all([(v, fm.GramShareRequest()) for v in validators])
    shares = [
        ev.accept(v, r, fm.GramShare, sealed=True) for v, r in zip(validators, replies, strict=True)
    ]
    try:
        total = EncryptedGram.total([gram_of(s.gram) for s in shares])
    except ValueError as exc:
        raise ProtocolError(f"the validators' Gram matrices do not add up: {exc}") from None
    precision = shares[0].gram.exponent
    if any(s.gram.exponent != precision or s.rows < 1 for s in shares):
        raise ProtocolError("a validator's Gram matrix has another precision, or no rows")
    rows = sum(s.rows for s in shares)
    total_vector = gram_vector(total, precision)
    ev.record(
        fr.GramTotal(
            inputs=[vector_digest(s.gram) for s in shares],
            rows=rows,
            total=vector_ref(total_vector),
        ),
        public=[total_vector],
    )
    agg.transport.request(
        agg.buyer_id,
        fm.GramTotalRequest(
            tuple(validators),
            tuple(s.gram for s in shares),
            tuple(s.rows for s in shares),
            tuple(s.signature for s in shares),
        ),
    )
    return total


def evaluate_forms(
    agg: AggregatorBase,
    gram: EncryptedGram,
    spec: TrainingSpec,
    validators: list[str],
    label: str,
    vectors: list[EncryptedVector],
    pairs: list[Pair],
    scale: int,
) -> fm.FormValues:
    """One batch of forms through the remixer the rule names and the buyer; every step
    recorded."""
    ev, key = agg.evidence, gram.public_key
    remixer = form_remixer(validators, label, spec.eval_every)
    if remixer is None:
        raise ProtocolError(f"no validator to remix {label}")
    precision_bits = spec.precision_bits
    bits = form_mask_bits(vectors[0].exponent, scale)
    mine = MaskShare.draw(len(vectors), len(vectors[0]), bits)
    masked_cts, _ = add_masks(key, ciphertexts(vectors), mine)
    masked = vectors_like(masked_cts, vectors, bits + 1)
    flat = flatten_pairs(pairs)
    ev.record(
        fr.FormMask(
            label=label,
            scale=scale,
            pairs=list(flat),
            vectors=[vector_ref(v) for v in vectors],
            masked=[vector_ref(v) for v in masked],
        ),
        # The masked vectors are public: the buyer receives them (to check the remixer's
        # proof), and so can anyone; the vectors themselves are sealed.
        public=masked,
        sealed=vectors,
    )
    gram_v = gram_vector(gram, precision_bits)
    # Enc(H·a¹) is needed only for the aggregator's share: computed while the remixer and
    # the buyer work (the wait on them releases the GIL).
    with ThreadPoolExecutor(1) as pool:
        own_products = pool.submit(gram.times, mine.masks)
        reply = agg.transport.request(remixer, fm.FormMaskRequest(label, masked, gram_v, scale))
        remixed = ev.accept(remixer, reply, fm.FormMasked, sealed=False)
        sent = tuple(vector_digest(v) for v in masked)
        if remixed.label != label or remixed.input_digests != sent:
            raise ProtocolError(f"{remixer} masked other vectors than {label}'s")
        if len(remixed.vectors) != len(vectors) or len(remixed.gram_masks) != len(vectors):
            raise ProtocolError(f"{remixer} returned the wrong number of vectors")
        reply = agg.transport.request(
            agg.buyer_id, fm.FormRequest(label, masked, remixed, remixer, flat, scale)
        )
        products = ev.accept(agg.buyer_id, reply, fm.FormProducts, sealed=False)
        if products.label != label or len(products.products) != len(vectors):
            raise ProtocolError(f"the buyer's products answer another batch than {label}")
        share_cts = correction(
            key, gram, mine, own_products.result(), ciphertexts(products.products), pairs,
            ciphertexts(remixed.gram_masks),
        )  # fmt: skip
        share = ring_vector(key, share_cts)
        ev.record(fr.FormShare(label=label, share=vector_ref(share)), sealed=[share])
        reply = agg.transport.request(remixer, fm.FormCombineRequest(label, products, share, flat))
        combined = ev.accept(remixer, reply, fm.FormCombined, sealed=False)
        if combined.label != label or combined.terms_digest != vector_digest(products.terms):
            raise ProtocolError(f"{remixer} combined other terms than {label}'s")
        reply = agg.transport.request(agg.buyer_id, fm.FormOpenRequest(label, combined, remixer))
        values = ev.accept(agg.buyer_id, reply, fm.FormValues, sealed=False)
        if values.label != label:
            raise ProtocolError(f"the buyer's values answer another batch than {label}")
        return values
