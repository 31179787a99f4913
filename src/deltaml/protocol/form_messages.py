"""The Gram metric's messages (``metric_protocol: gram``; the parties:
:mod:`deltaml.roles.forms`, the mathematics: :mod:`deltaml.crypto.quadform`).

An evaluation — or the contributions' ``2m`` numbers — is a batch of bilinear forms
``u_kᵀHu_t`` of the validators' summed Gram matrix ``H``, named by a ``label``
(:func:`deltaml.protocol.rules.form_label`). Encrypted Gram matrices travel as their
upper triangle, row by row, at the fixed-point exponent ``precision_bits``. Index pairs
travel flattened, ``(k₀, t₀, k₁, t₁, …)``; ``-1`` is the sum of every vector.

=====================  ==========  ======================================================
message                signer      what the signature binds
=====================  ==========  ======================================================
GramShare              validator   its ``Enc(H_v)`` and row count, once per request
FormMasked             remixer     the masked vectors it was given, what it made of them
                                   (its own mask added, re-randomized), ``Enc(H·a²)`` and
                                   the proof that it knows what it added
FormProducts           buyer       ``Enc(Hũ_k)`` and ``Enc(ũ_kᵀHũ_t)`` for the remixer's
                                   vectors: deterministic in ``Enc(H)`` and ``ũ``
FormCombined           remixer     every pair's ``Enc(u_kᵀHu_t)``: the buyer's terms, the
                                   aggregator's share and its own, re-randomized
FormValues             buyer       the decrypted forms and ``ũ`` with proofs, and what they
                                   give (a metric, or every trainer's contribution)
=====================  ==========  ======================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from deltaml.crypto import EncryptedVector
from deltaml.protocol.messages import Message


@dataclass(frozen=True)
class GramShareRequest(Message):
    """Aggregator → validator: send your encrypted Gram matrix, once per request."""


@dataclass(frozen=True)
class GramShare(Message):
    gram: EncryptedVector
    rows: int
    signature: str = ""


@dataclass(frozen=True)
class GramTotalRequest(Message):
    """Aggregator → buyer: every validator's signed share, once per request; the buyer
    sums them itself and uses that sum in every later batch."""

    validators: tuple[str, ...]
    shares: tuple[EncryptedVector, ...]
    rows: tuple[int, ...]
    signatures: tuple[str, ...]


@dataclass(frozen=True)
class FormMaskRequest(Message):
    """Aggregator → the remixer: a batch's vectors, masked by the aggregator."""

    label: str
    vectors: tuple[EncryptedVector, ...]
    #: ``Enc(H)``'s upper triangle (the sum of the validators' shares).
    gram: EncryptedVector
    #: The vectors' scale (see :class:`FormRequest`): with their exponent it fixes the
    #: masks' width by a public rule (:func:`deltaml.learning.gram_metric.form_mask_bits`).
    scale: int


@dataclass(frozen=True)
class FormMasked(Message):
    label: str
    vectors: tuple[EncryptedVector, ...]
    #: ``Enc(H·a²_k)``, one per vector, for the aggregator's cross terms.
    gram_masks: tuple[EncryptedVector, ...]
    input_digests: tuple[str, ...] = ()
    #: The proof of added plaintexts (:mod:`deltaml.crypto.knowledge`), hex.
    proof: tuple[str, ...] = ()
    signature: str = ""


@dataclass(frozen=True)
class FormRequest(Message):
    """Aggregator → buyer: the remixer's signed vectors of a batch, the aggregator's
    masked vectors they were made from, and the pairs to evaluate."""

    label: str
    inputs: tuple[EncryptedVector, ...]
    masked: FormMasked
    remixer: str
    pairs: tuple[int, ...]
    #: Every vector is ``scale·[w; −1]`` at its exponent (the trainers' count for a
    #: metric's total, the encoded relaxation for the contributions' local models).
    scale: int


@dataclass(frozen=True)
class FormProducts(Message):
    label: str
    products: tuple[EncryptedVector, ...]
    terms: EncryptedVector
    #: Digests of the remixer's vectors, and of ``Enc(H)``.
    masked_digests: tuple[str, ...] = ()
    gram_digest: str = ""
    signature: str = ""


@dataclass(frozen=True)
class FormCombineRequest(Message):
    """Aggregator → the remixer: the buyer's products and the aggregator's share."""

    label: str
    products: FormProducts
    share: EncryptedVector
    pairs: tuple[int, ...]


@dataclass(frozen=True)
class FormCombined(Message):
    label: str
    values: EncryptedVector
    #: Digests of the buyer's terms and of the aggregator's share.
    terms_digest: str = ""
    share_digest: str = ""
    signature: str = ""


@dataclass(frozen=True)
class FormOpenRequest(Message):
    """Aggregator → buyer: the remixer's signed forms of a batch, to decrypt."""

    label: str
    combined: FormCombined
    remixer: str


@dataclass(frozen=True)
class FormValues(Message):
    label: str
    #: What the forms give: ``(metric,)`` for an evaluation, each trainer's Shapley
    #: value for the contributions.
    results: tuple[float, ...]
    #: The forms (signed integers, hex) with their proof of decryption.
    values: tuple[str, ...] = ()
    plaintexts: tuple[str, ...] = ()
    randomness: tuple[str, ...] = ()
    #: ``ũ``, every vector's entries concatenated, with their proof of decryption.
    opened: tuple[str, ...] = ()
    opened_randomness: tuple[str, ...] = ()
    #: The SSE of the contributions' empty coalition (the initial model's).
    base_sse: float = 0.0
    signature: str = ""
