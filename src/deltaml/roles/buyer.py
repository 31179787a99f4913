"""The model buyer: holds the private key, decrypts only what the protocol allows."""

from __future__ import annotations

import logging

import numpy as np

from deltaml.crypto import EncryptedVector, PrivateKey, PublicKey, generate_keypair, refresh_masked
from deltaml.errors import ProtocolError
from deltaml.learning.contributions import gram_from_columns, shapley
from deltaml.learning.metrics import metric_from_vector, secure_generator
from deltaml.learning.models import ModelType, Standardization, model_type
from deltaml.learning.standardize import stats_from_sums
from deltaml.roles import messages as m

log = logging.getLogger(__name__)

#: The fewest owners whose summed statistics the buyer will decrypt.
MIN_STATS_CONTRIBUTORS = 2


class ModelBuyer:
    """Creates the request and the key pair; decrypts aggregates, masked values and the result.

    It decrypts exactly four kinds of thing: the sum of all owners' statistics,
    masked vectors for a refresh (re-encrypted, never returned in the clear), the
    mixed residual vector of an evaluation (only its norm is used) and the final model.
    """

    def __init__(
        self,
        party_id: str,
        spec: m.TrainingSpec,
        key_bits: int = 2048,
        *,
        keypair: tuple[PublicKey, PrivateKey] | None = None,
        allow_test_keys: bool = False,
    ) -> None:
        self.party_id = party_id
        self.spec = spec
        self.public_key, self._private_key = keypair or generate_keypair(
            key_bits, allow_test_keys=allow_test_keys
        )
        self.model: ModelType = model_type(spec.model, spec.l2)
        self.stats: Standardization | None = None
        self.metrics: dict[int, float] = {}
        self._sse: dict[int, float] = {}
        self.contributions: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.refreshed_values = 0

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

    def _on_DecryptStats(self, msg: m.DecryptStats) -> m.PublicStats:
        if msg.contributors < MIN_STATS_CONTRIBUTORS:
            raise ProtocolError("refusing to decrypt statistics of fewer than two owners")
        stats = stats_from_sums(
            msg.total.decrypt(self._private_key), msg.n_features, msg.include_target
        )
        self.stats = stats
        return m.PublicStats(
            stats.count,
            tuple(float(v) for v in stats.means),
            tuple(float(v) for v in stats.scales),
            stats.target_mean,
            stats.target_scale,
        )

    def _on_RefreshRequest(self, msg: m.RefreshRequest) -> m.Refreshed:
        out = tuple(refresh_masked(v, self._private_key, msg.base_exponent) for v in msg.vectors)
        self.refreshed_values += sum(len(v) for v in msg.vectors)
        return m.Refreshed(msg.round, out)

    def _on_MetricRequest(self, msg: m.MetricRequest) -> m.MetricValue:
        if self.stats is None:
            raise ProtocolError("no statistics yet")
        values = msg.vector.decrypt(self._private_key)
        self._sse[msg.round] = float(values @ values)
        value = metric_from_vector(values, msg.rows, self.model, self.stats)
        self.metrics[msg.round] = value
        log.info("round %d: validation %s %.6g", msg.round, self.model.metric_name, value)
        return m.MetricValue(msg.round, value)

    def _on_GramRequest(self, msg: m.GramRequest) -> m.ContributionValues:
        if msg.base_round not in self._sse:
            raise ProtocolError(
                f"no metric for round {msg.base_round} to measure contributions from"
            )
        gram = gram_from_columns([c.decrypt(self._private_key) for c in msg.columns])
        phi = shapley(gram, self._sse[msg.base_round], secure_generator())
        self.contributions = phi
        return m.ContributionValues(tuple(float(v) for v in phi))

    def _on_FinalModel(self, msg: m.FinalModel) -> m.Ack:
        self.weights = msg.total.decrypt(self._private_key) / msg.n_trainers
        return m.Ack("model received")
