"""Typed messages between the roles. Nothing else crosses a party boundary.

Every field is a public value, a ciphertext or a masked ciphertext; the privacy
tests walk these records to prove it. Records check their field types on
construction and fail with a clear :class:`~deltaml.errors.DeltaMLTypeError`.

Replies that a published number depends on carry a ``signature``: the sender's
EIP-191 signature over the message's evidence body
(:func:`deltaml.roles.evidence.message_body`). Decryption proofs travel as
lower-case hex strings (plaintexts in ``[0, n)`` and the randomness ``r``), digests
of ciphertext vectors as SHA-256 hex.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.errors import DeltaMLTypeError
from deltaml.protocol.spec import FIELDS

_SIMPLE: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "str": str,
    "bool": bool,
}


@dataclass(frozen=True)
class Message:
    """Base of all messages; subclasses are frozen dataclasses with typed fields."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            _check(type(self).__name__, f.name, getattr(self, f.name), hints[f.name])

    @property
    def kind(self) -> str:
        return type(self).__name__


def _check(owner: str, name: str, value: object, hint: object) -> None:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return
        hint = next(o for o in options if o is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, tuple):
            raise DeltaMLTypeError(f"{owner}.{name} must be a tuple, got {type(value).__name__}")
        args = typing.get_args(hint)
        for item in value:
            _check(owner, name, item, args[0])
        return
    if isinstance(hint, type):
        expected = _SIMPLE.get(hint.__name__, hint)
        if isinstance(value, bool) and hint in (int, float):
            raise DeltaMLTypeError(f"{owner}.{name} must be {hint.__name__}, got bool")
        if not isinstance(value, expected):
            raise DeltaMLTypeError(
                f"{owner}.{name} must be {hint.__name__}, got {type(value).__name__}"
            )


# -- set-up ---------------------------------------------------------------------------
def _default(name: str) -> typing.Any:
    """The request spec's default of a field (:data:`deltaml.protocol.spec.FIELDS`)."""
    return FIELDS[name].default


@dataclass(frozen=True)
class TrainingSpec(Message):
    """What the buyer asks for; public to every participant."""

    model: str
    rounds: int
    l2: float | None = _default("l2")
    rho: float = _default("rho")
    relaxation: float = _default("relaxation")
    #: Fixed-point bits of plaintext matrices (ADMM updates, rotations).
    precision_bits: int = _default("precision_bits")
    #: Fixed-point exponent of freshly encrypted values.
    base_exponent: int = _default("base_exponent")
    #: Evaluate the validation metric every this many rounds (and after the last; the
    #: initial model always). 3 by default: every published metric costs a proven
    #: decryption and tells the buyer one more value of the validators' quadratic form,
    #: and with 12 rounds five evaluations keep metrics and contributions within half
    #: of the training time (README, "Performance").
    eval_every: int = _default("eval_every")
    #: Seed of the trainer/validator split (recorded).
    split_seed: int = _default("split_seed")
    trainer_fraction: float = _default("trainer_fraction")
    #: Measure each trainer's Shapley contribution after training.
    contributions: bool = _default("contributions")
    #: Calibrated noise on published metrics: the standard deviation it adds to a
    #: single validator's mean squared error, in standardized target units (0: none).
    metric_noise: float = _default("metric_noise")
    #: ``"rotation"`` or ``"gram"`` (:mod:`deltaml.roles.forms`).
    metric_protocol: str = _default("metric_protocol")
    #: The buyer's escrowed payment, split by :func:`deltaml.ledger.payouts.compute_payouts`.
    deposit_wei: int = _default("deposit_wei")
    #: Training goes on without a trainer that stops answering while at least this
    #: many trainers remain; a silent validator always fails the request.
    min_trainers: int = _default("min_trainers")
    #: Stop after the first evaluation whose validation metric is at least this many
    #: percent below the initial model's (0: train all ``rounds``); see
    #: :func:`deltaml.evidence.published.last_round`.
    target_improvement: float = _default("target_improvement")
    #: ``"admm"`` (rounds) or ``"exact"`` (one masked solve: :mod:`deltaml.roles.exact`).
    solver: str = _default("solver")
    #: A logistic model of this many classes (≥ 3; 0: one model): the class sums join
    #: the statistics and one exact solve fits every class (:mod:`deltaml.learning.lda`).
    n_classes: int = _default("n_classes")
    #: Owners fill empty cells with the federated means of their columns (the request's
    #: ``missing_indicator: false``): the statistics are over non-empty cells.
    impute: bool = _default("impute")


@dataclass(frozen=True)
class StatsRequest(Message):
    """Aggregator → owner: encrypt your sums, plus ``mask`` (signed hex integers, one per
    sum, at ``base_exponent``). The aggregator deals the owners masks that add up to
    zero: the buyer, which checks each owner's signed sums, decrypts only their total."""

    include_target: bool
    public_key: PublicKey
    base_exponent: int
    mask: tuple[str, ...] = ()
    #: More than two classes: append each class's count and feature sums.
    classes: int = 0
    #: Sums and counts of the non-empty cells (empty cells to be filled with the means).
    impute: bool = False


@dataclass(frozen=True)
class EncryptedSums(Message):
    sums: EncryptedVector
    signature: str = ""


@dataclass(frozen=True)
class DecryptStats(Message):
    """Aggregator → buyer: the sum of all owners' encrypted sums, with its lineage.

    ``owners``, ``sums`` and ``signatures`` are each seated owner's signed
    :class:`EncryptedSums`: the buyer decrypts ``total`` only if it is their sum and
    they are every seat, not on the aggregator's word (``contributors``).
    """

    total: EncryptedVector
    contributors: int
    n_features: int
    include_target: bool
    owners: tuple[str, ...] = ()
    sums: tuple[EncryptedVector, ...] = ()
    signatures: tuple[str, ...] = ()
    classes: int = 0
    impute: bool = False


@dataclass(frozen=True)
class PublicStats(Message):
    count: int
    means: tuple[float, ...]
    scales: tuple[float, ...]
    target_mean: float
    target_scale: float
    #: More than two classes: each class's rows and standardized means (row-major).
    class_counts: tuple[int, ...] = ()
    class_means: tuple[float, ...] = ()
    #: Empty cells imputed: each column's mean over the non-empty cells of all owners.
    impute_means: tuple[float, ...] = ()
    #: Digest of the decrypted total, and the proof of its decryption.
    total_digest: str = ""
    plaintexts: tuple[str, ...] = ()
    randomness: tuple[str, ...] = ()
    signature: str = ""


@dataclass(frozen=True)
class Setup(Message):
    """Aggregator → owner: its role, the statistics and the spec."""

    role: str  # "trainer" | "validator"
    spec: TrainingSpec
    stats: PublicStats
    public_key: PublicKey
    n_trainers: int
    initial_model: EncryptedVector


@dataclass(frozen=True)
class SetupDone(Message):
    #: Trainers: bits an encrypted bound grows per round (public, ~6 bits of information).
    growth_bits: int


# -- rounds ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundRequest(Message):
    round: int
    total: EncryptedVector


@dataclass(frozen=True)
class StateUpdate(Message):
    round: int
    state: EncryptedVector
    #: ``"round"`` (a reply to the round's total) or ``"refresh"`` (after a refresh).
    phase: str = "round"
    #: Digest of the vector the state was computed from (the total, or the refreshed state).
    input_digest: str = ""
    signature: str = ""


@dataclass(frozen=True)
class RefreshPrepare(Message):
    round: int


@dataclass(frozen=True)
class MaskedState(Message):
    """Trainer → aggregator: its state under a fresh refresh mask, signed: the buyer
    refreshes only vectors a seated trainer signed as masked."""

    round: int
    masked: EncryptedVector
    signature: str = ""


@dataclass(frozen=True)
class RefreshRequest(Message):
    """Aggregator → buyer: masked vectors to re-encrypt at the base exponent.

    ``trainers[i]`` masked ``vectors[i]`` and signed it (``signatures[i]``, the
    signature of its :class:`MaskedState`).
    """

    round: int
    vectors: tuple[EncryptedVector, ...]
    base_exponent: int
    trainers: tuple[str, ...] = ()
    signatures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refreshed(Message):
    round: int
    vectors: tuple[EncryptedVector, ...]


@dataclass(frozen=True)
class RefreshComplete(Message):
    round: int
    refreshed: EncryptedVector


# -- metrics and result ---------------------------------------------------------------
@dataclass(frozen=True)
class EvaluateRequest(Message):
    round: int
    total: EncryptedVector


@dataclass(frozen=True)
class EncryptedResiduals(Message):
    round: int
    vector: EncryptedVector
    rows: int
    #: Digest of the encrypted total the validator evaluated.
    input_digest: str = ""
    signature: str = ""


@dataclass(frozen=True)
class RemixRequest(Message):
    """Aggregator → the remixer (a validator): the aggregator-mixed vector of an evaluation."""

    round: int
    vector: EncryptedVector


@dataclass(frozen=True)
class Remix(Message):
    """The remixer's reply: the vector rotated again with its own secret rotation."""

    round: int
    vector: EncryptedVector
    #: Digest of the mixed vector it was given.
    input_digest: str = ""
    #: Commitment to its rotation's seed (:func:`deltaml.evidence.published.rotation_commitment`).
    commitment: str = ""
    signature: str = ""


@dataclass(frozen=True)
class MetricRequest(Message):
    """Aggregator → buyer: an evaluation's vector, as the remixer signed it.

    ``vector`` is the output of ``remixer``'s :class:`Remix` (the validator the public
    rule names for the round); ``remix_input``, ``remix_commitment`` and
    ``remix_signature`` are that message's other fields, so the buyer can check the
    signature.
    """

    round: int
    vector: EncryptedVector
    rows: int
    remixer: str = ""
    remix_input: str = ""
    remix_commitment: str = ""
    remix_signature: str = ""


@dataclass(frozen=True)
class MetricValue(Message):
    round: int
    value: float
    rows: int = 0
    #: Digest of the mixed vector, and the proof of its decryption: the vector's
    #: ciphertexts packed (:mod:`deltaml.crypto.packing`, slots of ``slot_bits``), and
    #: each packed ciphertext's plaintext and randomness.
    vector_digest: str = ""
    plaintexts: tuple[str, ...] = ()
    randomness: tuple[str, ...] = ()
    slot_bits: int = 0
    signature: str = ""
    #: ``solver: exact``, the exact model's evaluation: its common denominator ``δ``
    #: (hex); the vector raised to it holds small integers, decrypted packed.
    denominator: str = ""


@dataclass(frozen=True)
class ContributionRequest(Message):
    """Aggregator → validator: every trainer's encrypted round-one update, in trainer order."""

    first_updates: tuple[EncryptedVector, ...]


@dataclass(frozen=True)
class ContributionColumns(Message):
    columns: tuple[EncryptedVector, ...]
    #: Digests of the round-one updates the columns were computed from.
    input_digests: tuple[str, ...] = ()
    signature: str = ""


@dataclass(frozen=True)
class RemixColumnsRequest(Message):
    """Aggregator → the remixer (a validator): the aggregator-mixed contribution columns."""

    columns: tuple[EncryptedVector, ...]


@dataclass(frozen=True)
class RemixColumns(Message):
    """The remixer's reply: every column rotated again with one secret rotation."""

    columns: tuple[EncryptedVector, ...]
    #: Digests of the mixed columns it was given.
    input_digests: tuple[str, ...] = ()
    #: Commitment to its rotation's seed.
    commitment: str = ""
    signature: str = ""


@dataclass(frozen=True)
class GramRequest(Message):
    """Aggregator → buyer: the remixed columns; the buyer keeps only their Gram matrix.

    ``columns`` are the output of ``remixer``'s :class:`RemixColumns`, whose other
    fields (``remix_inputs``, ``remix_commitment``, ``remix_signature``) come along
    for the buyer to check the signature.
    """

    columns: tuple[EncryptedVector, ...]
    #: Validation SSE of the initial model is the value of the empty coalition.
    base_round: int
    #: A seed fixed by the transcript; kept in the format, unused (Shapley values are exact).
    shapley_seed: int = 0
    remixer: str = ""
    remix_inputs: tuple[str, ...] = ()
    remix_commitment: str = ""
    remix_signature: str = ""


@dataclass(frozen=True)
class ContributionValues(Message):
    #: Shapley value of each trainer, in the request's trainer order (SSE units).
    values: tuple[float, ...]
    #: The evidence: digests of the mixed columns, proofs of their decryption (the
    #: columns' ciphertexts concatenated and packed, as in :class:`MetricValue`), the
    #: Gram matrix, the empty coalition's SSE and how the values were computed.
    column_digests: tuple[str, ...] = ()
    plaintexts: tuple[str, ...] = ()
    randomness: tuple[str, ...] = ()
    slot_bits: int = 0
    gram: tuple[tuple[float, ...], ...] = ()
    base_round: int = 0
    base_sse: float = 0.0
    seed: int = 0
    method: str = "exact"
    #: The exact model's denominator the columns were raised to (``solver: exact``; hex).
    denominator: str = ""
    signature: str = ""


@dataclass(frozen=True)
class FinalModel(Message):
    total: EncryptedVector
    n_trainers: int
    rounds: int


@dataclass(frozen=True)
class Reconfigure(Message):
    """Aggregator → remaining owners: a trainer was dropped; round ``round`` starts again
    with ``n_trainers`` trainers. Trainers reply with their new growth (``SetupDone``)."""

    round: int
    n_trainers: int


@dataclass(frozen=True)
class Ack(Message):
    note: str = field(default="")
