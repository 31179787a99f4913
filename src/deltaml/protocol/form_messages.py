"""The Gram metric's messages (``metric_protocol: gram``; the parties:
:mod:`deltaml.roles.forms`, the mathematics: :mod:`deltaml.crypto.quadform`).

An evaluation — or the contributions' ``2m`` numbers — is a batch of bilinear forms
``u_kᵀHu_t`` of the validators' summed Gram matrix ``H``, named by a ``label``
(:func:`deltaml.protocol.rules.form_label`). Encrypted Gram matrices travel as their
upper triangle, row by row, at the fixed-point exponent ``precision_bits``. Index pairs
travel flattened, ``(k₀, t₀, k₁, t₁, …)``; ``-1`` is the sum of every vector.

The buyer never receives ``Enc(H_v)``, ``Enc(H)`` or a ciphertext computed from them
but the finished forms: it holds the key. It gets the validators' signed *notes* of
their shares (digest, rows, bound) instead, and checks that both mask holders summed
exactly those shares.

=====================  ============  ====================================================
message                signer        what the signature binds
=====================  ============  ====================================================
GramShare              validator     its ``Enc(H_v)``, row count and bound, once
FormMasked             mask holder   the vectors it was given, what it made of them (its
                                     mask added, re-randomized), the proof that it knows
                                     what it added, and the digest of the shares it summed
FormCross              2nd holder    ``Enc(H a²_k)`` for the first holder's cross terms
FormOpened             buyer         ``ũ``, decrypted packed with its proof
FormShare              1st holder    its share of every pair, and the ``Enc(H a²)`` it used
FormCombined           2nd holder    every pair's ``Enc(u_kᵀHu_t)``: both shares added,
                                     re-randomized
FormValues             buyer         the decrypted forms with proofs, and what they give
                                     (a metric, or every trainer's contribution)
=====================  ============  ====================================================
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
    #: Above every entry's magnitude, hex: the validator's claim, which sizes the
    #: largest form the buyer publishes.
    bound: str = "0"
    signature: str = ""


@dataclass(frozen=True)
class GramNotesRequest(Message):
    """Aggregator → buyer: every validator's signed share, without its ciphertexts (the
    digest, rows and bound its signature covers), once per request."""

    validators: tuple[str, ...]
    digests: tuple[str, ...]
    rows: tuple[int, ...]
    bounds: tuple[str, ...]
    signatures: tuple[str, ...]


@dataclass(frozen=True)
class FormMaskRequest(Message):
    """Aggregator → a mask holder: a batch's vectors (the aggregator's for the first
    holder, the first holder's signed output for the second)."""

    label: str
    vectors: tuple[EncryptedVector, ...]
    #: The vectors' scale (see :class:`FormRequest`): with their exponent it fixes the
    #: masks' width by a public rule (:func:`deltaml.learning.gram_metric.form_mask_bits`).
    scale: int
    #: Every validator's signed share, in seat order, to a holder that has not summed
    #: them yet (empty afterwards).
    shares: tuple[GramShare, ...] = ()


@dataclass(frozen=True)
class FormMasked(Message):
    label: str
    vectors: tuple[EncryptedVector, ...]
    input_digests: tuple[str, ...] = ()
    #: The proof of added plaintexts (:mod:`deltaml.crypto.knowledge`), hex.
    proof: tuple[str, ...] = ()
    #: :func:`deltaml.learning.gram_metric.shares_digest` of the shares it summed.
    gram: str = ""
    signature: str = ""


@dataclass(frozen=True)
class FormCrossRequest(Message):
    """Aggregator → the second holder: ``Enc(H a²)`` of a batch, for the first holder."""

    label: str


@dataclass(frozen=True)
class FormCross(Message):
    label: str
    products: tuple[EncryptedVector, ...]
    signature: str = ""


@dataclass(frozen=True)
class FormRequest(Message):
    """Aggregator → buyer: both holders' signed outputs of a batch, to open."""

    label: str
    first: FormMasked
    masked: FormMasked
    #: The first holder (a validator, or the aggregator when there is one validator)
    #: and the second (the remixer).
    holders: tuple[str, ...]
    pairs: tuple[int, ...]
    #: Every vector is ``scale·[w; −1]`` at its exponent (the trainers' count for a
    #: metric's total, the encoded relaxation for the contributions' local models).
    scale: int


@dataclass(frozen=True)
class FormOpened(Message):
    label: str
    #: ``ũ``, every vector's entries concatenated (signed integers, hex).
    opened: tuple[str, ...]
    #: Their packed plaintexts and randomness: the proof of decryption.
    plaintexts: tuple[str, ...] = ()
    randomness: tuple[str, ...] = ()
    #: Digests of the second holder's vectors (what was decrypted) and the first's.
    masked_digests: tuple[str, ...] = ()
    first_digests: tuple[str, ...] = ()
    signature: str = ""


@dataclass(frozen=True)
class FormPrepareRequest(Message):
    """Aggregator → the first holder: the buyer's ``ũ``, to compute ``Enc(H(ũ − a¹))``
    while the second holder computes its ``Enc(H a²)``."""

    label: str
    opened: FormOpened


@dataclass(frozen=True)
class FormShareRequest(Message):
    """Aggregator → the first holder: the buyer's ``ũ`` and the second holder's
    ``Enc(H a²)``."""

    label: str
    opened: FormOpened
    cross: FormCross
    pairs: tuple[int, ...]


@dataclass(frozen=True)
class FormShare(Message):
    label: str
    share: EncryptedVector
    opened_digest: str = ""
    #: Digests of the second holder's ``Enc(H a²)`` it was computed with.
    cross_digests: tuple[str, ...] = ()
    signature: str = ""


@dataclass(frozen=True)
class FormCombineRequest(Message):
    """Aggregator → the second holder: the buyer's ``ũ`` and the first holder's share."""

    label: str
    opened: FormOpened
    share: FormShare
    pairs: tuple[int, ...]


@dataclass(frozen=True)
class FormCombined(Message):
    label: str
    values: EncryptedVector
    #: Digests of the buyer's ``ũ`` (its signed body) and of the first holder's share.
    opened_digest: str = ""
    share_digest: str = ""
    signature: str = ""


@dataclass(frozen=True)
class FormOpenRequest(Message):
    """Aggregator → buyer: the remixer's signed forms of a batch, to decrypt, with the
    holders' signatures on what passed between them through the aggregator — without
    the ciphertexts, which the buyer could decrypt: the first holder's share (its digest
    and the digests of the ``Enc(H a²)`` it used) and the second's ``Enc(H a²)``."""

    label: str
    combined: FormCombined
    remixer: str
    share_digest: str = ""
    share_cross: tuple[str, ...] = ()
    share_signature: str = ""
    cross_digests: tuple[str, ...] = ()
    cross_signature: str = ""


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
    #: The SSE of the contributions' empty coalition (the initial model's).
    base_sse: float = 0.0
    signature: str = ""
