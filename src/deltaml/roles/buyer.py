"""The model buyer: holds the private key, decrypts only what the protocol allows."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from eth_account import Account

from deltaml.crypto import (
    EncryptedVector,
    PrivateKey,
    PublicKey,
    generate_keypair,
    prove_decryption,
    refresh_masked,
)
from deltaml.crypto.packing import PackingError, prove_packed_decryption
from deltaml.crypto.paillier import check_key_size
from deltaml.errors import ProtocolError
from deltaml.evidence.published import (
    denoised_sse,
    denominator_exponent,
    gram_from_ints,
    metric_value,
    shapley_method,
    shapley_values,
    sse_from_ints,
    stats_from_ints,
)
from deltaml.evidence.signatures import hex_ints, key_id, recover_signer, vector_digest
from deltaml.learning.contributions import contribution_remixer
from deltaml.learning.metrics import metric_remixer
from deltaml.learning.models import ModelType, Standardization, model_type
from deltaml.learning.standardize import sums_length
from deltaml.protocol import form_messages as fm
from deltaml.protocol import messages as m
from deltaml.protocol.exact_messages import (
    ExactCheckRequest,
    ExactModel,
    ExactSolution,
    ExactSolveCheck,
    ExactSolveRequest,
)
from deltaml.protocol.rules import EXACT_ROUND, evaluates
from deltaml.roles import exact
from deltaml.roles import form_holder as forms
from deltaml.roles.evidence import message_body, sign_message
from deltaml.roles.form_holder import form_holder

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

log = logging.getLogger(__name__)

#: The fewest owners whose summed statistics the buyer will decrypt.
MIN_STATS_CONTRIBUTORS = 2


@dataclass(frozen=True)
class Seats:
    """The owners a request seats, in seat order, each with the address it signs with.

    What the buyer checks lineage against: the contract's seats (``start``) in a
    deployment, the public split of the owners in a simulation. Party ids are the
    transport's names (the addresses themselves in the services).
    """

    trainers: tuple[tuple[str, str], ...]
    validators: tuple[tuple[str, str], ...]

    @classmethod
    def of(
        cls,
        trainers: Iterable[str],
        validators: Iterable[str],
        addresses: Mapping[str, str] | None = None,
    ) -> Seats:
        """Seats from party ids, with ``addresses`` (id → address; default: the ids)."""
        book = dict(addresses or {})
        return cls(
            tuple((t, book.get(t, t)) for t in trainers),
            tuple((v, book.get(v, v)) for v in validators),
        )

    @property
    def count(self) -> int:
        return len(self.trainers) + len(self.validators)

    @property
    def trainer_ids(self) -> list[str]:
        return [t for t, _ in self.trainers]

    @property
    def validator_ids(self) -> list[str]:
        return [v for v, _ in self.validators]

    def owners(self) -> dict[str, str]:
        return dict(self.trainers + self.validators)


class ModelBuyer:
    """Creates the request and the key pair; decrypts aggregates, masked values and the result.

    It decrypts exactly five kinds of thing: the sum of all owners' statistics,
    masked vectors for a refresh (re-encrypted, never returned in the clear), the
    mixed residual vector of an evaluation (only its norm is used), the mixed
    contribution columns (only their Gram matrix is used) and the final model. With
    two or more validators what it decrypts has been mixed twice, by the aggregator
    and by a validator (see :mod:`deltaml.learning.metrics`).

    Every number it publishes comes with proofs of the decryptions it rests on
    (the plaintexts and each ciphertext's randomness), is computed from those
    plaintexts by :mod:`deltaml.evidence.published` exactly as a verifier will
    recompute it, and is signed with its Ethereum ``account``. Metric vectors and
    contribution columns are packed first (:mod:`deltaml.crypto.packing`): many values
    per decrypted and proven ciphertext, by public deterministic operations anyone can
    redo. The packed plaintexts are a function of the same vector's values, so the
    buyer learns exactly what one decryption per value would tell it, no more.
    """

    def __init__(
        self,
        party_id: str,
        spec: m.TrainingSpec,
        key_bits: int = 2048,
        *,
        keypair: tuple[PublicKey, PrivateKey] | None = None,
        allow_test_keys: bool = False,
        account: LocalAccount | None = None,
        seats: Seats | None = None,
    ) -> None:
        self.party_id = party_id
        #: The request's seats; nothing is decrypted (but the final model) before they
        #: are known.
        self.seats = seats
        self.account: LocalAccount = account if account is not None else Account.create()
        self.spec = spec
        self.public_key, self._private_key = keypair or generate_keypair(
            key_bits, allow_test_keys=allow_test_keys
        )
        check_key_size(self.public_key, allow_test_keys=allow_test_keys)
        self.model: ModelType = model_type(spec.model, spec.l2, spec.n_classes)
        self.stats: Standardization | None = None
        self.metrics: dict[int, float] = {}
        self._sse: dict[int, float] = {}
        self.shapley_method: str | None = None
        self.contributions: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.refreshed_values = 0
        self._n_features: int | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    def initial_model(self, n_weights: int) -> EncryptedVector:
        """``Enc(z₀)``: zeros, i.e. the mean predictor once features are standardized."""
        return EncryptedVector.encrypt(
            self.public_key, np.zeros(n_weights), self.spec.base_exponent
        )

    def handle(self, message: m.Message) -> m.Message:
        handler = getattr(self, "_on_" + message.kind, None)
        if handler is None:
            raise ProtocolError(f"the buyer does not accept {message.kind}")
        return handler(message)  # type: ignore[no-any-return,unused-ignore]

    def _prove(self, vector: EncryptedVector) -> tuple[list[int], tuple[str, ...], tuple[str, ...]]:
        """Signed plaintexts of ``vector``, and the proof: raw plaintexts and randomness (hex)."""
        if vector.public_key != self.public_key:
            raise ProtocolError("a vector under another key")
        raw, randomness = prove_decryption(self._private_key, vector.ciphertexts)
        values = [self._private_key.decode_signed(v) for v in raw]
        return values, tuple(hex_ints(raw)), tuple(hex_ints(randomness))

    def _prove_packed(
        self, vectors: tuple[EncryptedVector, ...], denominator: int = 1
    ) -> tuple[list[list[int]], int, tuple[str, ...], tuple[str, ...]]:
        """Signed values of each vector, decrypted packed; the slot width and the proof
        (``denominator``: the exact model's residues, times it, are the values).

        Refuses (:class:`ProtocolError`) when a value lies outside the packing's
        magnitude bound: the slots could then have carried into each other.
        """
        if any(v.public_key != self.public_key for v in vectors):
            raise ProtocolError("a vector under another key")
        exponents = [
            v.exponent if denominator == 1 else denominator_exponent(v.exponent, denominator)
            for v in vectors
        ]
        try:
            opening = prove_packed_decryption(
                self._private_key,
                [(v.ciphertexts, e) for v, e in zip(vectors, exponents, strict=True)],
                denominator,
            )
        except PackingError as exc:
            raise ProtocolError(f"refusing to publish a packed decryption: {exc}") from None
        return (
            opening.values,
            opening.layout.slot_bits,
            tuple(hex_ints(opening.plaintexts)),
            tuple(hex_ints(opening.randomness)),
        )

    # -- lineage: what the buyer decrypts must come signed from the seats ---------------
    def _seated(self) -> Seats:
        if self.seats is None:
            raise ProtocolError("the request's seats are not known: refusing to decrypt")
        return self.seats

    def _check_signed(self, msg: m.Message, party: str, seats: Mapping[str, str]) -> None:
        """``msg`` is signed by ``party``, which must hold one of ``seats``."""
        address = seats.get(party)
        if address is None:
            raise ProtocolError(f"{party} holds no seat that may send a {msg.kind}")
        signature = str(getattr(msg, "signature", ""))
        signer = recover_signer(message_body(msg, key_id(self.public_key)), signature)
        if signer is None or signer.lower() != address.lower():
            raise ProtocolError(f"the {msg.kind} of {party} does not carry its signature")

    def _remixer(self, named: str | None, given: str, what: str) -> dict[str, str]:
        if named is None or given != named:
            raise ProtocolError(f"{what} was not remixed by the validator the public rule names")
        return self._seated().owners()

    def _metric_length(self) -> int:
        """Length of an evaluation's vector: each validator's rotated factor (``d + 2``,
        one more with metric noise), concatenated."""
        if self._n_features is None:
            raise ProtocolError("no statistics yet")
        per_validator = self._n_features + 2 + (1 if self.spec.metric_noise > 0 else 0)
        return len(self._seated().validators) * per_validator

    def _on_DecryptStats(self, msg: m.DecryptStats) -> m.PublicStats:
        """Decrypt the sum of the owners' statistics: every seat's, each signed by it."""
        seats = self._seated()
        owners = seats.owners()
        if msg.contributors < MIN_STATS_CONTRIBUTORS or seats.count < MIN_STATS_CONTRIBUTORS:
            raise ProtocolError("refusing to decrypt statistics of fewer than two owners")
        if not (
            msg.contributors == len(msg.owners) == len(msg.sums) == len(msg.signatures)
            and sorted(msg.owners) == sorted(owners)
        ):
            raise ProtocolError(
                f"refusing to decrypt statistics: not one signed sum from each of the "
                f"{seats.count} seats"
            )
        classes, impute = self.spec.n_classes, self.spec.impute
        if msg.classes != classes:
            raise ProtocolError(f"refusing to decrypt statistics of {msg.classes} classes: "
                                f"the request has {classes or 'no class sums'}")  # fmt: skip
        if msg.impute != impute:
            raise ProtocolError(
                "refusing to decrypt statistics laid out for another request "
                f"(empty cells {'filled' if msg.impute else 'not filled'} with means)"
            )
        length = sums_length(msg.n_features, msg.include_target, classes, impute)
        for party, sums, signature in zip(msg.owners, msg.sums, msg.signatures, strict=True):
            if len(sums) != length or sums.public_key != self.public_key:
                raise ProtocolError(f"the statistics of {party} have the wrong size or key")
            self._check_signed(m.EncryptedSums(sums, signature), party, owners)
        total: EncryptedVector = sum(msg.sums)  # type: ignore[assignment]
        if vector_digest(total) != vector_digest(msg.total):
            raise ProtocolError("the statistics total is not the sum of the owners' sums")
        self._n_features = msg.n_features
        values, plaintexts, randomness = self._prove(msg.total)
        stats = stats_from_ints(
            values, msg.total.exponent, msg.n_features, msg.include_target, classes, impute
        )
        self.stats = stats
        class_counts, class_means, impute_means = stats.extra_fields()
        reply = m.PublicStats(
            stats.count,
            tuple(float(v) for v in stats.means),
            tuple(float(v) for v in stats.scales),
            stats.target_mean,
            stats.target_scale,
            class_counts,
            class_means,
            impute_means,
            vector_digest(msg.total),
            plaintexts,
            randomness,
        )
        return sign_message(reply, self.account, self.public_key)

    def _on_RefreshRequest(self, msg: m.RefreshRequest) -> m.Refreshed:
        """Refresh only states a seated trainer signed as masked, one per trainer."""
        trainers = dict(self._seated().trainers)
        if not (
            0 < len(msg.vectors) == len(msg.trainers) == len(msg.signatures)
            and len(set(msg.trainers)) == len(msg.trainers)
        ):
            raise ProtocolError("refusing to refresh: not one signed masked state per trainer")
        for party, vector, signature in zip(msg.trainers, msg.vectors, msg.signatures, strict=True):
            self._check_signed(m.MaskedState(msg.round, vector, signature), party, trainers)
            if vector.exponent < msg.base_exponent or vector.public_key != self.public_key:
                raise ProtocolError(f"the masked state of {party} cannot be refreshed")
        out = tuple(refresh_masked(v, self._private_key, msg.base_exponent) for v in msg.vectors)
        self.refreshed_values += sum(len(v) for v in msg.vectors)
        return m.Refreshed(msg.round, out)

    def _on_MetricRequest(self, msg: m.MetricRequest) -> m.MetricValue:
        """Decrypt an evaluation's vector: only in an evaluated round, only as remixed and
        signed by the validator the public rule names, only of the seats' length."""
        if self.stats is None:
            raise ProtocolError("no statistics yet")
        spec = self.spec
        if not evaluates(msg.round, spec):
            raise ProtocolError(f"round {msg.round} has no evaluation in this request's spec")
        validators = self._seated().validator_ids
        named = metric_remixer(validators, msg.round, spec.eval_every)
        seats = self._remixer(named, msg.remixer, f"the metric vector of round {msg.round}")
        remix = m.Remix(
            msg.round, msg.vector, msg.remix_input, msg.remix_commitment, msg.remix_signature
        )
        self._check_signed(remix, msg.remixer, seats)
        if len(msg.vector) != self._metric_length():
            raise ProtocolError(
                f"the metric vector of round {msg.round} does not have the seats' length"
            )
        denominator = 1
        if spec.solver == "exact" and msg.round == EXACT_ROUND:  # residues z/δ: to integers
            denominator = exact.key_holder(self).evaluation_denominator()
        (values,), slot_bits, plaintexts, randomness = self._prove_packed(
            (msg.vector,), denominator
        )
        sse = denoised_sse(
            sse_from_ints(values, msg.vector.exponent, denominator),
            msg.rows,
            self.spec.metric_noise,
        )
        self._sse[msg.round] = sse
        value = metric_value(self.model, sse, msg.rows, self.stats)
        self.metrics[msg.round] = value
        log.info("round %d: validation %s %.6g", msg.round, self.model.metric_name, value)
        reply = m.MetricValue(
            msg.round,
            value,
            msg.rows,
            vector_digest(msg.vector),
            plaintexts,
            randomness,
            slot_bits,
            denominator=f"{denominator:x}" if denominator != 1 else "",
        )
        return sign_message(reply, self.account, self.public_key)

    def _on_GramRequest(self, msg: m.GramRequest) -> m.ContributionValues:
        """Decrypt the contribution columns: only if the request asked for contributions,
        only as remixed and signed by the named validator, one column per seated trainer
        (and the constant one) at most, each of the seats' length."""
        if not self.spec.contributions:
            raise ProtocolError("this request did not ask for contributions")
        seats = self._remixer(
            contribution_remixer(self._seated().validator_ids), msg.remixer, "the columns"
        )
        remix = m.RemixColumns(
            msg.columns, msg.remix_inputs, msg.remix_commitment, msg.remix_signature
        )
        self._check_signed(remix, msg.remixer, seats)
        length = self._metric_length() - (1 if self.spec.metric_noise > 0 else 0) * len(
            self._seated().validators
        )
        if not 2 <= len(msg.columns) <= len(self._seated().trainers) + 1 or any(
            len(c) != length for c in msg.columns
        ):
            raise ProtocolError("the contribution columns do not match the seats")
        if msg.base_round not in self._sse:
            raise ProtocolError(
                f"no metric for round {msg.base_round} to measure contributions from"
            )
        denominator = 1
        if self.spec.solver == "exact":  # each trainer's part: residues z/δ (roles/exact.py)
            denominator = exact.key_holder(self).evaluation_denominator()
        columns, slot_bits, plaintexts, randomness = self._prove_packed(msg.columns, denominator)
        gram = gram_from_ints(columns, [c.exponent for c in msg.columns], denominator)
        base_sse = self._sse[msg.base_round]
        phi = shapley_values(gram, base_sse)
        self.contributions = phi
        self.shapley_method = shapley_method(len(phi))
        reply = m.ContributionValues(
            tuple(float(v) for v in phi),
            tuple(vector_digest(c) for c in msg.columns),
            plaintexts,
            randomness,
            slot_bits,
            tuple(tuple(float(v) for v in row) for row in gram),
            msg.base_round,
            base_sse,
            msg.shapley_seed,
            self.shapley_method,
            f"{denominator:x}" if denominator != 1 else "",
        )
        return sign_message(reply, self.account, self.public_key)

    def _on_GramNotesRequest(self, msg: fm.GramNotesRequest) -> m.Ack:
        form_holder(self).notes(msg)  # metric_protocol: gram (roles/form_holder.py)
        return m.Ack("Gram notes checked")

    def _on_FormRequest(self, msg: fm.FormRequest) -> fm.FormOpened:
        return form_holder(self).opened(msg)

    def _on_FormOpenRequest(self, msg: fm.FormOpenRequest) -> fm.FormValues:
        return form_holder(self).open(msg)

    def _on_ExactSolveRequest(self, msg: ExactSolveRequest) -> ExactSolution:
        return exact.key_holder(self).solve(msg)  # solver: exact (roles/exact.py)

    def _on_ExactCheckRequest(self, msg: ExactCheckRequest) -> ExactSolveCheck:
        return exact.key_holder(self).check_parts(msg)

    def _on_ExactModel(self, msg: ExactModel) -> m.Ack:
        return exact.key_holder(self).model(msg)

    def _on_FinalModel(self, msg: m.FinalModel) -> m.Ack:
        self.weights = msg.total.decrypt(self._private_key) / msg.n_trainers
        return m.Ack("model received")

    # -- persistence (a buyer node that restarts goes on) ---------------------------------
    def snapshot(self) -> dict[str, object]:
        """What the buyer learned so far (public statistics, metrics, SSEs, final weights)."""
        return {
            "stats": None if self.stats is None else self.stats.to_dict(),
            "metrics": {str(k): v for k, v in self.metrics.items()},
            "sse": {str(k): v for k, v in self._sse.items()},
            "weights": None if self.weights is None else [float(v) for v in self.weights],
            **exact.holder_snapshot(self),
            **forms.holder_snapshot(self),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        if snapshot.get("stats") is not None:
            self.stats = Standardization.from_dict(snapshot["stats"])
        self.metrics = {int(k): float(v) for k, v in snapshot.get("metrics", {}).items()}
        self._sse = {int(k): float(v) for k, v in snapshot.get("sse", {}).items()}
        if snapshot.get("weights") is not None:
            self.weights = np.array(snapshot["weights"], dtype=np.float64)
        exact.restore_holder(self, snapshot)
        forms.restore_holder(self, snapshot)
