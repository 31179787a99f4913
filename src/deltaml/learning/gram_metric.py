r"""The validation error and the contributions from the validators' summed Gram matrix
(``metric_protocol: gram``).

A validator's factor ``R_v`` (:func:`deltaml.learning.metrics.validator_factor`) gives
``‖A_v w − r_v‖² = [w; −1]ᵀ H_v [w; −1]`` with ``H_v = R_vᵀR_v``; it sends ``H_v`` once,
encrypted, at ``precision_bits`` of fixed point (:func:`validator_gram`). A batch of
vectors ``u_k = scale·[w_k; −1]`` at fixed-point exponent ``e`` then gives
``u_kᵀHu_t = scale²·2^(2e+p)·r_kᵀr_t`` (:mod:`deltaml.crypto.quadform`):

- an evaluation of round ``k``'s total ``t = m·w``: ``u = [t; −m]`` (:func:`metric_vector`),
  one pair ``(0, 0)``: the SSE;
- the contributions: trainer ``k``'s round-one local model ``x_k = (s_k − (1 − α)z₀)/α``
  as ``u_k = [2^q s_k − (2^q − A) z₀; −A]`` with ``A = round(α·2^q)``
  (:func:`contribution_vectors`), the pairs ``(k, k)`` and ``(k, Σ)``: the ``2m`` numbers
  ``g_kk = ‖r_k‖²`` and ``r_kᵀr_tot`` that exact Shapley values need
  (:func:`deltaml.learning.contributions.shapley_from_totals`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.crypto.knowledge import AddedPlaintextProof
from deltaml.crypto.packing import MAGNITUDE_BITS as PACKING_MAGNITUDE_BITS
from deltaml.crypto.quadform import SUM, EncryptedGram, Pair, mask_bits
from deltaml.errors import DeltaMLValueError
from deltaml.protocol.form_messages import FormOpened

#: The public bound on a model's weights (standardized units) the masks are sized for:
#: ``|w| < 2^MODEL_MAGNITUDE_BITS``.
MODEL_MAGNITUDE_BITS = 40


def _entry_bound(exponent: int, scale: int) -> int:
    """Above every entry of honest vectors ``scale·[w; −1]`` at ``exponent``: the public
    bound ``|w| < 2^MODEL_MAGNITUDE_BITS``, a power of two."""
    return 1 << (exponent + MODEL_MAGNITUDE_BITS + max(scale, 1).bit_length())


def form_mask_bits(exponent: int, scale: int) -> int:
    """Width of both holders' masks for vectors ``scale·[w; −1]`` at ``exponent``: a public
    rule, so neither holder's mask depends on a bound the other declares."""
    return mask_bits(_entry_bound(exponent, scale) - 1)


def proof_fields(proof: AddedPlaintextProof) -> tuple[str, ...]:
    return (f"{proof.commitment:x}", f"{proof.z:x}", f"{proof.w:x}")


def proof_of(fields: Sequence[str]) -> AddedPlaintextProof | None:
    """The proof three hex fields carry, or ``None`` when they are malformed."""
    try:
        commitment, z, w = (int(f, 16) for f in fields)
    except ValueError:
        return None
    return AddedPlaintextProof(commitment, z, w)


def shares_digest(digests: Sequence[str]) -> str:
    """What a mask holder signs to say which validators' shares its ``Enc(H)`` sums:
    SHA-256 of their digests, in seat order, one per line."""
    return hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()


def opened_values(opened: Sequence[str], count: int, size: int) -> list[list[int]]:
    """``ũ`` as the buyer publishes it (hex, every vector's entries concatenated)."""
    if size < 1 or len(opened) != count * size:
        raise DeltaMLValueError(f"ũ needs {count} vectors of {size} values")
    try:
        values = [int(v, 16) for v in opened]
    except (TypeError, ValueError):
        raise DeltaMLValueError("ũ must be hex integers") from None
    return [values[i * size : (i + 1) * size] for i in range(count)]


def opened_digest(opened: FormOpened) -> str:
    """How the holders' shares and sums name the buyer's ``ũ`` of a batch."""
    body = [opened.label, list(opened.opened), list(opened.masked_digests),
            list(opened.first_digests)]  # fmt: skip
    return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()


def proof_context(label: str, key: PublicKey) -> bytes:
    """What a batch's proof of added plaintexts is bound to."""
    return f"{key.fingerprint}:{label}".encode()


def validator_gram(factor: np.ndarray, precision_bits: int) -> list[list[int]]:
    """``H_v = RᵀR`` as integers at ``precision_bits`` (symmetric by construction)."""
    h = np.asarray(factor, dtype=np.float64).T @ np.asarray(factor, dtype=np.float64)
    size = h.shape[0]
    scale = float(2**precision_bits)
    out = [[0] * size for _ in range(size)]
    for i in range(size):
        for j in range(i, size):
            out[i][j] = out[j][i] = round(float(h[i, j]) * scale)
    return out


def gram_vector(gram: EncryptedGram, precision_bits: int) -> EncryptedVector:
    """An encrypted Gram matrix as a vector (its upper triangle), for messages."""
    return EncryptedVector(gram.public_key, list(gram.upper), precision_bits, gram.bound)


def gram_of(vector: EncryptedVector) -> EncryptedGram:
    """The encrypted Gram matrix a vector (:func:`gram_vector`) carries."""
    length = len(vector)
    size = int((np.sqrt(8 * length + 1) - 1) / 2)
    if size * (size + 1) // 2 != length:
        raise DeltaMLValueError("a Gram matrix's upper triangle has D(D+1)/2 entries")
    return EncryptedGram(vector.public_key, tuple(vector.ciphertexts), size, vector.bound)


def form_limit(
    pair: Pair, count: int, size: int, exponent: int, scale: int, gram_bound: int
) -> int:
    """The largest ``|u_kᵀHu_t|`` honest vectors can give: every entry below
    ``2^(w−80)`` (the model bound the masks are sized for; ``count`` times that for the
    sum), ``D`` entries, ``H``'s entries below ``gram_bound``.

    The buyer publishes no form beyond it. That is what makes a shifted share useless:
    to stay within the limit, a shift that is a multiple ``c·a`` of a holder's mask entry
    needs ``a ≤ 2·limit/c``, and a ``c`` large enough to read ``a`` to the model's
    precision leaves that with probability ``2^−80``."""
    entry = _entry_bound(exponent, scale)
    k, t = pair
    return (
        size * size * entry * entry * (count if k == SUM else 1) * (count if t == SUM else 1)
        * max(gram_bound, 1)
    )  # fmt: skip


def opened_exponent(exponent: int, scale: int) -> int:
    """The packing exponent (:mod:`deltaml.crypto.packing`) the buyer decrypts a batch's
    ``ũ`` at: its magnitude bound is ``2^(w+2)`` for the masks' width ``w``."""
    return form_mask_bits(exponent, scale) + 2 - PACKING_MAGNITUDE_BITS


def constant_entry(key: PublicKey, value: int) -> int:
    """``Enc(value)`` with randomness 1: deterministic, so anyone can recompute it."""
    return int((1 + key.encode_signed(value) * key.n) % key.nsquare)


def metric_vector(total: EncryptedVector, n_trainers: int) -> EncryptedVector:
    """``[t; −m]`` at ``t``'s exponent: ``m·[w; −1]``."""
    key = total.public_key
    last = -n_trainers << total.exponent
    cts = [*total.ciphertexts, constant_entry(key, last)]
    return EncryptedVector(key, cts, total.exponent, max(total.bound, abs(last)))


def encoded_relaxation(relaxation: float, precision_bits: int) -> int:
    """``A = round(α·2^q)``, the relaxation as the contributions' vectors encode it."""
    a = round(float(relaxation) * float(2**precision_bits))
    if not 0 < a < 2 ** (precision_bits + 1):
        raise DeltaMLValueError("the relaxation must lie strictly between 0 and 2")
    return a


def contribution_vectors(
    first_updates: Sequence[EncryptedVector],
    initial_model: EncryptedVector,
    relaxation: float,
    precision_bits: int,
) -> list[EncryptedVector]:
    """``u_k = A·[x_k; −1]`` at exponent ``E − q`` (deterministic), ``E`` the updates'.

    As integers: ``s_k·2^E + (A − 2^q)·z₀·2^(E−q) = 2^(E−q)·(2^q s_k − (2^q − A) z₀)``,
    and ``2^q s_k − (2^q − A) z₀ = A·x_k`` for ``s_k = (A/2^q) x_k + (1 − A/2^q) z₀``.
    Written at ``E − q`` rather than ``E`` the entries are ``q`` bits narrower, and so
    are the masks that hide them (:func:`form_mask_bits`)."""
    q = precision_bits
    a = encoded_relaxation(relaxation, q)
    exponent = max(initial_model.exponent + q, *(s.exponent for s in first_updates))
    z0 = initial_model.align(exponent - q).mul_int(a - 2**q)
    key = initial_model.public_key
    n2 = key._nsquare
    last = -a << (exponent - q)
    out = []
    for s in first_updates:
        v = s.align(exponent)
        cts = [x * y % n2 for x, y in zip(v.ciphertexts, z0.ciphertexts, strict=True)]
        bound = v.bound + z0.bound
        out.append(
            EncryptedVector(
                key, [*cts, constant_entry(key, last)], exponent - q, max(bound, abs(last))
            )
        )
    return out


def metric_pairs() -> list[Pair]:
    return [(0, 0)]


def contribution_pairs(n_trainers: int) -> list[Pair]:
    """``(k, k)`` for every trainer, then ``(k, Σ)``."""
    return [(k, k) for k in range(n_trainers)] + [(k, SUM) for k in range(n_trainers)]


def flatten_pairs(pairs: Sequence[Pair]) -> tuple[int, ...]:
    return tuple(i for pair in pairs for i in pair)


def unflatten_pairs(flat: Sequence[int]) -> list[Pair]:
    if len(flat) % 2:
        raise DeltaMLValueError("pairs travel as an even number of indices")
    return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]


def form_real(value: int, scale: int, exponent: int, precision_bits: int) -> float:
    """``u_kᵀHu_t`` back to ``r_kᵀr_t``: divided by ``scale²·2^(2e+p)``, rounded once."""
    return float(Fraction(value, scale * scale) / Fraction(2) ** (2 * exponent + precision_bits))
