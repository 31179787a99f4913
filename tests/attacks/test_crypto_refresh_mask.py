"""Attack: the buyer reads the low bits of a trainer's state through a refresh.

Issue 10, point 7: a refresh mask was ``μ·2^(e−e₀)``, so the buyer's decryption of a
masked state showed ``v mod 2^(e−e₀)`` exactly (the low 32 bits of the true and the
decrypted values were equal). The mask must be uniform over every bit: what the
buyer decrypts is then independent of the value, low bits included.
"""

from __future__ import annotations

import numpy as np

from deltaml.crypto import EncryptedVector, generate_keypair, mask_for_refresh
from deltaml.crypto.paillier import key_fingerprint
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.protocol import messages as m
from deltaml.roles import DataOwner, ModelBuyer

LOW = 32


def test_a_trainers_refresh_shows_the_buyer_none_of_its_low_bits() -> None:
    spec = m.TrainingSpec(model="linear", rounds=2)
    buyer = ModelBuyer("buyer", spec, 512, allow_test_keys=True)
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    share = split_owners(train, 2, seed=0)[0]
    owner = DataOwner("o", share.X, share.y, committed_key=key_fingerprint(buyer.public_key))
    d = share.n_features
    stats = m.PublicStats(len(share.y), tuple(share.X.mean(0)), tuple(share.X.std(0)), 0.0, 1.0)
    owner.handle(m.Setup("trainer", spec, stats, buyer.public_key, 1, buyer.initial_model(d + 1)))
    total = EncryptedVector.encrypt(buyer.public_key, np.linspace(-1, 1, d + 1), 40)
    owner.handle(m.RoundRequest(1, total))
    state = owner._states[1]
    assert state.exponent - spec.base_exponent >= LOW  # the state has low bits to hide
    truth = state.decrypt_ints(buyer._private_key)  # the test's view, nobody's in the protocol

    masked = owner.handle(m.RefreshPrepare(2))
    assert isinstance(masked, m.MaskedState)
    seen = masked.masked.decrypt_ints(buyer._private_key)  # what the buyer decrypts
    equal = sum((s - t) % 2**LOW == 0 for s, t in zip(seen, truth, strict=True))
    assert equal == 0, f"the low {LOW} bits of {equal} of {len(truth)} values showed through"


def _chi_square(values: list[int], bins: int) -> float:
    counts = np.bincount([int(v % bins) for v in values], minlength=bins)
    expected = len(values) / bins
    return float(((counts - expected) ** 2 / expected).sum())


def test_the_low_bits_the_key_holder_sees_are_independent_of_the_value() -> None:
    """For two values that differ only in their low byte, the low byte of the key holder's
    decryption is uniform either way (a chi-square test over 256 bins)."""
    pk, sk = generate_keypair(512, allow_test_keys=True)
    base, shift = 0, 40
    samples = 2048
    for value in (0, 2**45 + 255):
        vector = EncryptedVector.encrypt_ints(pk, [value] * samples, base + shift)
        masked, _ = mask_for_refresh(vector, base)
        seen = masked.decrypt_ints(sk)
        # 255 degrees of freedom: mean 255, sd 22.6; 450 is 8.6 sd (p < 1e-12). The old
        # mask put every sample in one bin: 2048 · 255 = 522,240.
        assert _chi_square(seen, 256) < 450
