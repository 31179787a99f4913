"""A data owner: keeps its rows, answers with ciphertexts only."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from eth_account import Account

from deltaml.crypto import EncryptedVector, PublicKey, mask_for_refresh
from deltaml.crypto.encoding import encode_array
from deltaml.crypto.paillier import check_key_size, key_fingerprint
from deltaml.errors import DeltaMLTypeError, DeltaMLValueError, ProtocolError
from deltaml.evidence.published import noise_variance, rotation_commitment
from deltaml.evidence.signatures import vector_digest
from deltaml.learning.admm import AdmmParams, EncodedUpdate, trainer_update
from deltaml.learning.contributions import remix_columns, validator_columns
from deltaml.learning.gram_metric import encoded_relaxation
from deltaml.learning.metrics import (
    encrypted_residual_vector,
    remix_vector,
    secure_generator,
    validator_factor,
)
from deltaml.learning.models import ModelType, Standardization, model_type
from deltaml.learning.standardize import impute_with, local_sums
from deltaml.protocol import form_messages as fm
from deltaml.protocol import messages as m
from deltaml.protocol.exact_messages import ExactReply, ExactRequest
from deltaml.protocol.rules import evaluates, form_round
from deltaml.roles import exact
from deltaml.roles.evidence import sign_message
from deltaml.roles.forms import MaskHolder, gram_share

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=m.Message)


class DataOwner:
    """Holds ``(x, y)`` and never lets a value of it, or of the model, out in the clear.

    As a trainer it keeps its ADMM state ``s_i`` encrypted; as a validator it keeps
    the triangular factor of its rows and, when the public rule names it the
    remixer, rotates the aggregator's mixed vector or columns again with a rotation
    of its own (see :mod:`deltaml.learning.metrics`). Everything it sends is
    re-randomized, and every reply a published number depends on is signed with its
    Ethereum ``account`` (a fresh one when none is given). The seeds of its remixing
    rotations are kept, with their salts, in ``rotation_openings``; its replies carry
    only commitments to them.
    """

    def __init__(
        self,
        party_id: str,
        x: np.ndarray,
        y: np.ndarray,
        *,
        committed_key: bytes,
        account: LocalAccount | None = None,
        allow_test_keys: bool = False,
        buyer: str | None = None,
    ) -> None:
        self.party_id = party_id
        self.account: LocalAccount = account if account is not None else Account.create()
        if not isinstance(committed_key, bytes) or len(committed_key) != 32:
            raise DeltaMLTypeError("committed_key must be a 32-byte key fingerprint")
        self.committed_key = committed_key
        self._allow_test_keys = allow_test_keys
        #: The committed key as first received (``n`` and ``h_s``): every later key equals it.
        self._pinned: PublicKey | None = None
        self._x = np.asarray(x, dtype=np.float64)
        self._y = np.asarray(y, dtype=np.float64)
        self.role: str | None = None
        self._key: PublicKey | None = None
        self._model: ModelType | None = None
        self._stats: Standardization | None = None
        self._spec: m.TrainingSpec | None = None
        self._update: EncodedUpdate | None = None
        #: Trainer state after each round still needed: a round may be asked again
        #: (the aggregator restarted mid-round), and must then start from the same state.
        self._states: dict[int, EncryptedVector] = {}
        self._mask: list[int] | None = None
        self._factor: np.ndarray | None = None
        self._n_trainers = 0
        self._initial_model: EncryptedVector | None = None
        self._rng = secure_generator()
        self.rotation_openings: dict[str, tuple[int, bytes]] = {}
        self._exact_factors: list[Any] = []
        #: The request's buyer's address (from the chain, in a marketplace): as a mask
        #: holder of the Gram metric, it works only on a ũ the buyer signed.
        self._forms = MaskHolder(buyer)
        self._gram_share: fm.GramShare | None = None

    @property
    def n_rows(self) -> int:
        return len(self._x)

    @property
    def address(self) -> str:
        return str(self.account.address)

    def _signed(self, msg: _M, key: PublicKey) -> _M:
        return sign_message(msg, self.account, key)

    def handle(self, message: m.Message) -> m.Message:
        handler = getattr(self, "_on_" + message.kind, None)
        if handler is None:
            raise ProtocolError(f"a data owner does not accept {message.kind}")
        for key in _keys_in(message):
            self._check_key(key)
        return handler(message)  # type: ignore[no-any-return,unused-ignore]

    def _check_key(self, key: PublicKey) -> None:
        """Refuse, before anything is computed, a message under any key but the committed one.

        The buyer commits to its key's fingerprint on chain (``keyHash``); whoever sends
        a ``StatsRequest``, a ``Setup`` or a vector under another key (the aggregator's
        own, say) gets nothing encrypted under it. A weak key is refused even when it is
        the committed one. The first key that passes is pinned whole (``n`` and ``h_s``).
        """
        check_key_size(key, allow_test_keys=self._allow_test_keys)
        if self._pinned is not None:
            if key != self._pinned:
                raise ProtocolError(f"{self.party_id}: a message under another key: refused")
            return
        if key_fingerprint(key) != self.committed_key:
            raise ProtocolError(
                f"{self.party_id}: a message under a key that is not the request's "
                "committed key: refused"
            )
        self._pinned = key

    # -- standardization ------------------------------------------------------------
    def _on_StatsRequest(self, msg: m.StatsRequest) -> m.EncryptedSums:
        if msg.classes and not np.all(np.isin(self._y, np.arange(msg.classes))):
            raise ProtocolError(f"{self.party_id}: the target is not a class number 0 to "
                                f"{msg.classes - 1}")  # fmt: skip
        if not msg.impute and np.isnan(self._x).any():
            raise ProtocolError(f"{self.party_id}: empty cells the request does not fill in")
        sums = encode_array(
            local_sums(self._x, self._y, msg.include_target, msg.classes, msg.impute),
            msg.base_exponent,
        )
        # The buyer receives these signed sums to check them against the seats: masked by
        # the aggregator's zero-sum shares, they tell it nothing but their total.
        if len(msg.mask) != len(sums):
            raise ProtocolError("expected one mask share per statistic")
        try:
            shares = [int(v, 16) for v in msg.mask]
        except ValueError:
            raise ProtocolError("malformed mask share") from None
        masked = [v + a for v, a in zip(sums, shares, strict=True)]
        enc = EncryptedVector.encrypt_ints(msg.public_key, masked, msg.base_exponent)
        return self._signed(m.EncryptedSums(enc), msg.public_key)

    # -- set-up ---------------------------------------------------------------------
    def _on_Setup(self, msg: m.Setup) -> m.SetupDone:
        self.role = msg.role
        self._spec = msg.spec
        self._key = msg.public_key
        self._model = model_type(msg.spec.model, msg.spec.l2, msg.spec.n_classes)
        self._model.check_target(self._y)
        s = msg.stats
        self._stats = Standardization.published(
            s.count, s.means, s.scales, s.target_mean, s.target_scale,
            s.class_counts, s.class_means, s.impute_means,
        )  # fmt: skip
        if np.isnan(self._x).any():  # filled with the published means of the columns
            if len(s.impute_means) != self._x.shape[1]:
                raise ProtocolError(f"{self.party_id}: empty cells and no means to fill them")
            self._x = impute_with(self._x, np.array(s.impute_means))
        self._n_trainers = msg.n_trainers
        self._initial_model = msg.initial_model
        if msg.role == "trainer" and msg.spec.solver == "exact":
            self._exact_factors = exact.trainer_factors(
                msg.public_key,
                len(s.means) + 1,
                max(1, msg.spec.n_classes),
                exact.extra_for(msg.spec, msg.n_trainers),
            )
            return m.SetupDone(0)
        if msg.role == "trainer":
            self._states = {0: msg.initial_model}
            log.debug("%s: trainer ready (%d rows)", self.party_id, self.n_rows)
            return m.SetupDone(self._encode_update())
        if msg.role == "validator" and msg.spec.n_classes:
            return m.SetupDone(0)  # no encrypted metric of several classes yet
        if msg.role == "validator":
            self._factor = validator_factor(self._x, self._y, self._model, self._stats)
            log.debug("%s: validator ready (%d rows)", self.party_id, self.n_rows)
            return m.SetupDone(0)
        raise ProtocolError(f"unknown role {msg.role!r}")

    def _encode_update(self) -> int:
        """This trainer's ``[A_i | B_i]`` and ``c_i`` for the current number of trainers."""
        assert self._model is not None and self._stats is not None and self._spec is not None
        terms = self._model.local_terms(self._x, self._y, self._stats)
        params = AdmmParams(self._spec.rho, self._spec.relaxation)
        matrix, constant = trainer_update(terms, self._n_trainers, params)
        self._update = EncodedUpdate.encode(matrix, constant, self._spec.precision_bits)
        return self._update.growth_bits()

    def _on_Reconfigure(self, msg: m.Reconfigure) -> m.SetupDone:
        """A trainer was dropped: only ``A_i`` depends on the number of trainers; the states
        carry over (ADMM goes on from them), and round ``msg.round`` will be asked again."""
        if self.role is None or msg.n_trainers < 1:
            raise ProtocolError("nothing to reconfigure")
        self._n_trainers = msg.n_trainers
        if self.role == "validator":
            return m.SetupDone(0)
        self._states = {r: s for r, s in self._states.items() if r < msg.round}
        return m.SetupDone(self._encode_update())

    def _on_ExactRequest(self, msg: ExactRequest) -> ExactReply:
        """``solver: exact``: this trainer's system and masked system (roles/exact.py)."""
        self._require("trainer")
        assert self._model is not None and self._stats is not None
        terms = self._model.local_terms(self._x, self._y, self._stats)
        assert self._spec is not None
        extra = exact.extra_for(self._spec, self._n_trainers)
        return exact.trainer_reply(msg, terms, self._signed, self._exact_factors, extra)

    def _require(self, role: str) -> None:
        if self.role != role:
            raise ProtocolError(f"{self.party_id} is not a {role} in this training")

    # -- training -------------------------------------------------------------------
    def _state_before(self, k: int) -> EncryptedVector:
        """The state a round-``k`` message starts from (kept until round ``k + 1`` is asked)."""
        state = self._states.get(k - 1)
        if state is None:
            raise ProtocolError(f"{self.party_id} has no state to start round {k} from")
        return state

    def _on_RoundRequest(self, msg: m.RoundRequest) -> m.StateUpdate:
        self._require("trainer")
        assert self._update is not None
        state = self._update.apply(msg.total, self._state_before(msg.round))
        # Asking round k again (after an aggregator restart) recomputes it from the
        # same state; asking k + 1 means k was received, so older states can go.
        self._states = {r: s for r, s in self._states.items() if r == msg.round - 1}
        self._states[msg.round] = state
        reply = m.StateUpdate(msg.round, state.rerandomize(), "round", vector_digest(msg.total))
        return self._signed(reply, state.public_key)

    def _on_RefreshPrepare(self, msg: m.RefreshPrepare) -> m.MaskedState:
        self._require("trainer")
        assert self._spec is not None
        masked, self._mask = mask_for_refresh(
            self._state_before(msg.round), self._spec.base_exponent
        )
        # Signed: the buyer refreshes only what a seated trainer says it masked.
        return self._signed(m.MaskedState(msg.round, masked), masked.public_key)

    def _on_RefreshComplete(self, msg: m.RefreshComplete) -> m.StateUpdate:
        self._require("trainer")
        if self._mask is None:
            raise ProtocolError("no refresh is pending")
        old = self._state_before(msg.round)
        # The refreshed state decrypts to the same values: it replaces the old one.
        state = msg.refreshed.unmask(self._mask, old.bound, old.exponent)
        self._states[msg.round - 1] = state
        self._mask = None
        reply = m.StateUpdate(
            msg.round, state.rerandomize(), "refresh", vector_digest(msg.refreshed)
        )
        return self._signed(reply, state.public_key)

    # -- evaluation -----------------------------------------------------------------
    def _on_EvaluateRequest(self, msg: m.EvaluateRequest) -> m.EncryptedResiduals:
        self._require("validator")
        assert self._factor is not None and self._spec is not None
        vec = encrypted_residual_vector(
            msg.total,
            self._n_trainers,
            self._factor,
            self._spec.precision_bits,
            self._rng,
            noise_variance(self._spec.metric_noise, self.n_rows),
        )
        reply = m.EncryptedResiduals(
            msg.round, vec.rerandomize(), self.n_rows, vector_digest(msg.total)
        )
        return self._signed(reply, msg.total.public_key)

    def _commit_rotation(self, label: str) -> tuple[np.random.Generator, str]:
        """A fresh secret rotation seed, kept with its salt: its generator and commitment.

        One rotation per label: a second request for the same remix is refused, so each
        recorded commitment has exactly one opening.
        """
        if label in self.rotation_openings:
            raise ProtocolError(f"{self.party_id} already remixed {label}")
        seed, salt = secrets.randbits(128), secrets.token_bytes(32)
        self.rotation_openings[label] = (seed, salt)
        return np.random.default_rng(seed), rotation_commitment(seed, salt)

    def _on_RemixRequest(self, msg: m.RemixRequest) -> m.Remix:
        """Rotate the aggregator's mixed vector again with a secret rotation of our own."""
        self._require("validator")
        assert self._spec is not None
        if msg.vector.public_key != self._key:
            raise ProtocolError("a vector under another key")
        if not evaluates(msg.round, self._spec):
            raise ProtocolError(f"round {msg.round} has no evaluation in this request's spec")
        rng, commitment = self._commit_rotation(f"metric-{msg.round}")
        remixed = remix_vector(msg.vector, self._spec.precision_bits, rng)
        reply = m.Remix(msg.round, remixed, vector_digest(msg.vector), commitment)
        return self._signed(reply, msg.vector.public_key)

    # -- the Gram metric (metric_protocol: gram; roles/forms.py) -------------------------
    def _on_GramShareRequest(self, msg: fm.GramShareRequest) -> fm.GramShare:
        self._require("validator")
        assert self._factor is not None and self._spec is not None and self._key is not None
        if self._spec.metric_protocol != "gram":
            raise ProtocolError("this request measures its metric by rotations, not Gram matrices")
        if self._gram_share is None:  # the same share to an aggregator that asks again
            share = gram_share(self._key, self._factor, self._spec.precision_bits, self.n_rows)
            self._gram_share = self._signed(share, self._key)
        return self._gram_share

    def _on_FormMaskRequest(self, msg: fm.FormMaskRequest) -> fm.FormMasked:
        self._require("validator")
        assert self._key is not None and self._spec is not None
        spec = self._spec
        # The scale the rules give the batch, never the aggregator's word: it sizes the
        # mask that hides the vectors from the aggregator.
        try:
            contributions = form_round(msg.label) is None
        except DeltaMLValueError as exc:
            raise ProtocolError(str(exc)) from None
        scale = (
            encoded_relaxation(spec.relaxation, spec.precision_bits)
            if contributions
            else self._n_trainers
        )
        return self._signed(self._forms.mask(msg, self._key, spec, scale), self._key)

    def _holder_key(self) -> PublicKey:
        """The request's key, for a validator holding a mask of the Gram metric."""
        self._require("validator")
        assert self._key is not None
        return self._key

    def _on_FormCrossRequest(self, msg: fm.FormCrossRequest) -> fm.FormCross:
        key = self._holder_key()
        return self._signed(self._forms.cross(msg, key), key)

    def _on_FormPrepareRequest(self, msg: fm.FormPrepareRequest) -> m.Ack:
        self._forms.prepare(msg, self._holder_key())
        return m.Ack(f"prepared {msg.label}")

    def _on_FormShareRequest(self, msg: fm.FormShareRequest) -> fm.FormShare:
        key = self._holder_key()
        return self._signed(self._forms.first_share(msg, key), key)

    def _on_FormCombineRequest(self, msg: fm.FormCombineRequest) -> fm.FormCombined:
        key = self._holder_key()
        return self._signed(self._forms.combine(msg, key), key)

    def _on_ContributionRequest(self, msg: m.ContributionRequest) -> m.ContributionColumns:
        self._require("validator")
        assert self._factor is not None and self._spec is not None
        assert self._initial_model is not None
        if len(msg.first_updates) != self._n_trainers:
            raise ProtocolError("expected one round-one update per trainer")
        # The exact route's members are models themselves (its parts), not relaxed
        # round-one updates.
        exact_route = self._spec.solver == "exact"
        columns = validator_columns(
            msg.first_updates,
            self._initial_model,
            1.0 if exact_route else self._spec.relaxation,
            self._factor,
            self._spec.precision_bits,
            self._rng,
        )
        reply = m.ContributionColumns(
            tuple(c.rerandomize() for c in columns),
            tuple(vector_digest(u) for u in msg.first_updates),
        )
        return self._signed(reply, self._initial_model.public_key)

    def _on_RemixColumnsRequest(self, msg: m.RemixColumnsRequest) -> m.RemixColumns:
        """Rotate the aggregator's mixed columns again with a secret rotation of our own."""
        self._require("validator")
        assert self._spec is not None
        if not msg.columns or any(c.public_key != self._key for c in msg.columns):
            raise ProtocolError("no columns to remix, or columns under another key")
        rng, commitment = self._commit_rotation("contributions")
        remixed = remix_columns(msg.columns, self._spec.precision_bits, rng)
        reply = m.RemixColumns(
            tuple(remixed), tuple(vector_digest(c) for c in msg.columns), commitment
        )
        return self._signed(reply, msg.columns[0].public_key)


def _keys_in(value: object) -> set[PublicKey]:
    """Every public key a message carries: its own fields and its vectors', nested included."""
    if isinstance(value, PublicKey):
        return {value}
    if isinstance(value, EncryptedVector):
        return {value.public_key}
    if isinstance(value, tuple):
        return set().union(*(_keys_in(v) for v in value))
    if isinstance(value, m.Message):
        return set().union(*(_keys_in(getattr(value, f.name)) for f in dataclasses.fields(value)))
    return set()
