r"""The thesis's encrypted linear-regression protocol, re-implemented as a baseline.

What the thesis (``shared/seed``, §6.1, §7.1 steps 5–7, §8) and its published code
(github.com/DeltaML: ``data-owner``, ``federated-aggregator``, ``model-buyer``; read
for reference, nothing copied) did, and what this module does the same way:

- **Data.** scikit-learn's diabetes set *as shipped*, i.e. already pre-scaled
  (each column centred and divided by ``σ·√442`` over all 442 rows), plus a
  column of ones for the intercept; the target is left in its own units. The
  protocol does no scaling of its own. (:func:`thesis_design` reproduces the
  pre-scaling exactly from the raw columns.)
- **Roles.** 70 % of the owners train, the rest validate; only trainers'
  rows enter the gradient. We use the same trainers as our protocol's split.
- **Round.** The aggregator holds the model ``Enc(w)`` (never decrypted during
  training except by the buyer, see refresh). Every trainer ``i`` computes, on
  its ``n_i`` rows, per-sample encrypted predictions and its mean gradient

  .. math:: \hat y_j = \textstyle\sum_k x_{jk}\,\mathrm{Enc}(w_k),\qquad
            g_{ik} = \tfrac{1}{n_i}\textstyle\sum_j (\hat y_j − y_j)\, x_{jk}

  (``2·n_i·d + d`` ciphertext × plaintext products). The aggregator averages the
  trainers' gradients and takes **one** gradient step with learning rate 1.5:
  ``w ← w − 1.5 · (Σ_i g_i)/m``. 100 rounds, initial model zero.
- **Encoding.** phe ``EncryptedNumber`` with every plaintext scalar encoded at a
  fixed precision of ``2^-40`` (exponent −10 in phe's base 16): the faster variant
  of the per-sample protocol in ``shared/MEASUREMENTS.md``. Every product lowers
  the exponent by 10 hex digits, a round by 50, so the ciphertexts overflow phe's
  ``n/3`` budget after about nine rounds. The thesis's code sent the model to the
  buyer every second round (``ITERS_UNTIL_PARTIAL_RESULT = 2``), which decrypted and
  re-encrypted it; we refresh the same way but only when the budget requires it
  (fewer refreshes: this favours the baseline).
- **Wire.** The thesis serialized ciphertexts with phe's ``ciphertext()``, which
  obfuscates (a fresh ``r^n``, one full exponentiation) every number that leaves a
  party the first time: the model sent to the trainers and each trainer's gradient.
  We do the same by default and time it separately (``obfuscate=False`` skips it).

Deviations, all in the baseline's favour: the plaintext features are encoded once
per trainer instead of on every product; ``w − η·ḡ`` is computed as
``w + (−η)·ḡ`` (phe's ``__sub__`` would negate by a further product); the
trainers run one after another in one process, as ours do.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from phe import paillier

from deltaml.learning.data import Dataset

#: Fixed precision of every encoded plaintext (phe exponent −10 in base 16).
PRECISION = 2.0**-40
LEARNING_RATE = 1.5
ROUNDS = 100
#: Bits of headroom kept for the magnitudes of the encoded values (|v| < 2^64).
VALUE_MARGIN_BITS = 64
#: Products in one round's chain from ``w`` to the step: prediction, residual × x,
#: ``/n_i``, ``/m``, ``·(−η)``.
PRODUCTS_PER_ROUND_CHAIN = 5


def thesis_design(raw: Dataset) -> Dataset:
    """scikit-learn's pre-scaled diabetes features from the raw ones (exactly as shipped).

    ``load_diabetes(scaled=True)`` centres every column and divides it by
    ``σ·√n`` over all rows (population ``σ``); the target is unchanged.
    """
    x = np.asarray(raw.X, dtype=np.float64)
    scaled = (x - x.mean(axis=0)) / x.std(axis=0) / np.sqrt(len(x))
    return dataclasses.replace(raw, X=scaled, source=f"{raw.source}:sklearn-scaled")


def with_intercept(x: np.ndarray) -> np.ndarray:
    return np.hstack([np.asarray(x, dtype=np.float64), np.ones((len(x), 1))])


@dataclass
class ThesisRun:
    """What one run of the baseline measured."""

    rounds: int
    weights: np.ndarray
    keygen_seconds: float
    setup_seconds: float
    training_seconds: float
    round_seconds: list[float]
    trainer_seconds: float
    aggregator_seconds: float
    obfuscation_seconds: float
    refresh_seconds: float
    refreshes: int
    counts: Counter[str] = field(default_factory=Counter)
    #: Products per round (training only), one entry per round.
    products_per_round: list[int] = field(default_factory=list)
    min_exponent: int = 0

    @property
    def per_round_seconds(self) -> float:
        return self.training_seconds / self.rounds


class _Counted:
    """phe operations with the counts and the clock the benchmark reports."""

    def __init__(self, public_key: paillier.PaillierPublicKey) -> None:
        self.public_key = public_key
        self.counts: Counter[str] = Counter()

    def encode(self, value: float) -> paillier.EncodedNumber:
        return paillier.EncodedNumber.encode(self.public_key, float(value), precision=PRECISION)

    def mul(
        self, c: paillier.EncryptedNumber, k: paillier.EncodedNumber
    ) -> paillier.EncryptedNumber:
        self.counts["products"] += 1
        return c * k

    def add(
        self, a: paillier.EncryptedNumber, b: paillier.EncryptedNumber
    ) -> paillier.EncryptedNumber:
        """``a + b``; an exponent alignment (a product by ``16^Δ``) is counted apart."""
        if a.exponent != b.exponent:
            self.counts["alignments"] += 1
        return a + b

    def sum(self, values: Sequence[paillier.EncryptedNumber]) -> paillier.EncryptedNumber:
        acc = values[0]
        for v in values[1:]:
            acc = self.add(acc, v)
        return acc

    def send(self, values: Sequence[paillier.EncryptedNumber]) -> None:
        """Serialize as the thesis did: ``ciphertext()`` obfuscates each number once."""
        for v in values:
            if not getattr(v, "_EncryptedNumber__is_obfuscated", False):
                self.counts["obfuscations"] += 1
            v.ciphertext(be_secure=True)


class _Trainer:
    """A data owner with the trainer role: rows in the clear, the model encrypted."""

    def __init__(self, ops: _Counted, x: np.ndarray, y: np.ndarray) -> None:
        self.ops = ops
        self.n = len(x)
        self.x_enc = [[ops.encode(v) for v in row] for row in x]
        self.y = [float(v) for v in y]
        self.inv_n = ops.encode(1.0 / self.n)

    def gradient(self, w: Sequence[paillier.EncryptedNumber]) -> list[paillier.EncryptedNumber]:
        ops = self.ops
        d = len(w)
        residuals = []
        for row, target in zip(self.x_enc, self.y, strict=True):
            prediction = ops.sum([ops.mul(w[k], row[k]) for k in range(d)])
            residuals.append(prediction - target)  # adds a plaintext: no product
        grads = []
        for k in range(d):
            total = ops.sum(
                [ops.mul(r, row[k]) for r, row in zip(residuals, self.x_enc, strict=True)]
            )
            grads.append(ops.mul(total, self.inv_n))
        return grads


def run_thesis_protocol(
    trainer_shares: Sequence[Dataset],
    key_bits: int = 2048,
    rounds: int = ROUNDS,
    learning_rate: float = LEARNING_RATE,
    obfuscate: bool = True,
) -> ThesisRun:
    """Train with the thesis's protocol on the trainers' (pre-scaled) rows; see the module doc."""
    k0 = time.perf_counter()
    public_key, private_key = paillier.generate_paillier_keypair(n_length=key_bits)
    keygen_seconds = time.perf_counter() - k0

    s0 = time.perf_counter()
    ops = _Counted(public_key)
    trainers = [_Trainer(ops, with_intercept(s.X), s.y) for s in trainer_shares]
    d = trainer_shares[0].n_features + 1
    inv_m = ops.encode(1.0 / len(trainers))
    minus_eta = ops.encode(-learning_rate)
    # The buyer's initial model: zeros, encrypted (the thesis's DeltaModel starts at zero).
    w = [public_key.encrypt(0.0, precision=PRECISION) for _ in range(d)]
    base_exponent = w[0].exponent
    digits = -ops.encode(1.0).exponent
    budget_bits = public_key.max_int.bit_length() - 1
    setup_seconds = time.perf_counter() - s0

    round_seconds: list[float] = []
    products_per_round: list[int] = []
    trainer_s = aggregator_s = obfuscation_s = refresh_s = 0.0
    refreshes = 0
    min_exponent = base_exponent
    for _ in range(rounds):
        r0 = time.perf_counter()
        before = ops.counts["products"] + ops.counts["alignments"]
        # The buyer refreshes the model when the next round could overflow it.
        lowest = w[0].exponent - PRODUCTS_PER_ROUND_CHAIN * digits
        if 4 * -lowest + VALUE_MARGIN_BITS >= budget_bits:
            f0 = time.perf_counter()
            w = [public_key.encrypt(private_key.decrypt(c), precision=PRECISION) for c in w]
            ops.counts["decryptions"] += d
            ops.counts["encryptions"] += d
            refreshes += 1
            refresh_s += time.perf_counter() - f0
        if obfuscate:  # the aggregator sends the model to the trainers
            o0 = time.perf_counter()
            ops.send(w)
            obfuscation_s += time.perf_counter() - o0
        gradients = []
        for trainer in trainers:
            t0 = time.perf_counter()
            g = trainer.gradient(w)
            trainer_s += time.perf_counter() - t0
            if obfuscate:  # the trainer sends its gradient to the aggregator
                o0 = time.perf_counter()
                ops.send(g)
                obfuscation_s += time.perf_counter() - o0
            gradients.append(g)
        a0 = time.perf_counter()
        step = [
            ops.mul(ops.mul(ops.sum([g[k] for g in gradients]), inv_m), minus_eta) for k in range(d)
        ]
        w = [ops.add(wk, sk) for wk, sk in zip(w, step, strict=True)]
        min_exponent = min(min_exponent, w[0].exponent)
        aggregator_s += time.perf_counter() - a0
        products_per_round.append(ops.counts["products"] + ops.counts["alignments"] - before)
        round_seconds.append(time.perf_counter() - r0)

    weights = np.array([private_key.decrypt(c) for c in w])
    return ThesisRun(
        rounds=rounds,
        weights=weights,
        keygen_seconds=keygen_seconds,
        setup_seconds=setup_seconds,
        training_seconds=float(sum(round_seconds)),
        round_seconds=round_seconds,
        trainer_seconds=trainer_s,
        aggregator_seconds=aggregator_s,
        obfuscation_seconds=obfuscation_s,
        refresh_seconds=refresh_s,
        refreshes=refreshes,
        counts=ops.counts,
        products_per_round=products_per_round,
        min_exponent=min_exponent,
    )


def thesis_plaintext(
    trainer_shares: Sequence[Dataset], rounds: int = ROUNDS, learning_rate: float = LEARNING_RATE
) -> np.ndarray:
    """The same iteration in floating point (to check the encrypted run against)."""
    designs = [(with_intercept(s.X), np.asarray(s.y, dtype=np.float64)) for s in trainer_shares]
    w = np.zeros(designs[0][0].shape[1])
    for _ in range(rounds):
        grads = [(x @ w - y) @ x / len(x) for x, y in designs]
        w = w - learning_rate * np.mean(grads, axis=0)
    return w


def mse_gap(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """``(mse(w), mse(OLS), relative gap)`` on the rows ``[x, 1]``.

    The relative gap of the MSE equals that of our objective ``½·MSE/σ_y²`` (both are
    the same quadratic up to a positive factor), so it is comparable with
    :func:`deltaml.simulation.objective_gap`.
    """
    a = with_intercept(x)
    best, *_ = np.linalg.lstsq(a, y, rcond=None)
    mse = float(np.mean((a @ w - y) ** 2))
    mse_best = float(np.mean((a @ best - y) ** 2))
    return mse, mse_best, (mse - mse_best) / mse_best
