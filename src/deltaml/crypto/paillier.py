r"""Paillier key pairs, on ``phe`` for key generation and ``gmpy2`` for everything else.

Mathematics
-----------
With ``n = p·q`` and ``g = n + 1``, a plaintext ``m ∈ Z_n`` encrypts to

.. math:: c = g^m · r^n = (1 + m·n) · r^n \bmod n^2 .

The scheme is additively homomorphic: ``c₁·c₂ ↦ m₁ + m₂`` and ``c^k ↦ k·m``
(mod ``n``). Plaintexts are signed by the convention of ``phe``: values in
``[0, n/3]`` are non-negative, values in ``[2n/3, n)`` are negative, and
anything between is an overflow that decryption refuses.

Fast randomness
---------------
Computing ``r^n mod n²`` with a fresh 2048-bit ``r`` costs a full exponentiation
(~11 ms at 2048 bits). As in Damgård–Jurik–Nielsen (2010, §4), the public key
carries ``h_s = h^n mod n²`` for a random ``h``, and randomness is
``h_s^α`` with ``α`` uniform in ``[0, 2^⌈k/2⌉)`` for a ``k``-bit modulus: the
ciphertexts keep the standard form ``(1 + m·n)·r^n`` with ``r = h^α``, so
decryption, re-randomization and proofs of decryption are unchanged. The
exponentiation uses a fixed-base window table built once per key, which makes
a fresh randomizer about ten times cheaper.
"""

from __future__ import annotations

import collections
import hashlib
import secrets
import threading
import weakref
from dataclasses import dataclass, field

import gmpy2
from phe import paillier as _phe

from deltaml import settings
from deltaml.errors import DeltaMLValueError, PrecisionBudgetError

SUPPORTED_KEY_BITS = (2048, 3072)
#: Smaller keys, for tests only: fast, not secure.
TEST_KEY_BITS = (512, 768, 1024)
#: Set to ``1`` to let :data:`TEST_KEY_BITS` through every key check of this process
#: and its children (the test suite does; nothing in production may). Read at each
#: check, never cached, so a test can take the permission away.
TEST_KEYS_ENV = settings.TEST_KEYS_ENV

_WINDOW_BITS = 8
#: Direct exponentiations before the fixed-base table pays for its construction.
_TABLE_AFTER_USES = 48
#: Randomizers a busy key keeps ready (each ~0.5 KB at 2048 bits; 0 where cores are busy).
RANDOMIZER_POOL_CAPACITY = 256


class WeakKeyError(DeltaMLValueError):
    """A Paillier key below 2048 bits where no test opted in to small keys."""


def test_keys_allowed(allow_test_keys: bool = False) -> bool:
    """Whether test keys are allowed: asked for by the caller, or by :data:`TEST_KEYS_ENV`."""
    return allow_test_keys or settings.test_keys_allowed()


def check_key_size(key: PublicKey | int, *, allow_test_keys: bool = False) -> None:
    """Refuse a key (or a key size in bits) that is not 2048 or 3072 bits.

    Keys of :data:`TEST_KEY_BITS` pass only when a test opts in (``allow_test_keys``
    or :data:`TEST_KEYS_ENV`). Every production path checks every key it receives
    with this: key generation, the wire and serialization decoders, the data owner
    (before it encrypts anything) and the buyer.
    """
    bits = key.key_bits if isinstance(key, PublicKey) else int(key)
    if bits in SUPPORTED_KEY_BITS:
        return
    if bits in TEST_KEY_BITS and test_keys_allowed(allow_test_keys):
        return
    choices = " or ".join(map(str, SUPPORTED_KEY_BITS))
    raise WeakKeyError(
        f"unsupported key size of {bits} bits: a Paillier key must have {choices} bits"
    )


class _RandomizerPool:
    """Precomputes ``(h_s^α, α)`` pairs on a background thread, outside the GIL.

    ``gmpy2.powmod`` releases the GIL when its thread's context allows it, so the
    pool fills on a second core while the caller computes; a party that waits for
    others (most of them, most of the time) gets its randomizers for free. When the
    pool is empty the caller computes its own: nothing ever waits for the pool.
    """

    def __init__(self, hs: gmpy2.mpz, nsquare: gmpy2.mpz, alpha_bits: int) -> None:
        self._hs, self._nsquare, self._alpha_bits = hs, nsquare, alpha_bits
        self._randbits = secrets.SystemRandom().getrandbits  # the OS's CSPRNG, its own handle
        self._items: collections.deque[tuple[gmpy2.mpz, int]] = collections.deque()
        self._room = threading.Condition()
        self._closed = False
        self.thread = threading.Thread(target=self._fill, name="deltaml-randomizers", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop the thread (its key is no longer used): it ends after its current item."""
        with self._room:
            self._closed = True
            self._room.notify()

    def _fill(self) -> None:
        gmpy2.set_context(gmpy2.context(gmpy2.get_context(), allow_release_gil=True))
        while True:
            with self._room:
                while len(self._items) >= RANDOMIZER_POOL_CAPACITY and not self._closed:
                    self._room.wait()
                if self._closed:
                    return
            alpha = self._randbits(self._alpha_bits)
            factor = gmpy2.powmod(self._hs, alpha, self._nsquare)
            with self._room:
                self._items.append((factor, alpha))

    def take(self) -> tuple[gmpy2.mpz, int] | None:
        with self._room:
            if not self._items:
                return None
            item = self._items.popleft()
            self._room.notify()
            return item


#: Every live public key by ``(n, h_s)`` (weak: an unused key goes, and its pool stops).
_INTERNED: weakref.WeakValueDictionary[tuple[int, int], PublicKey] = weakref.WeakValueDictionary()
_INTERNED_LOCK = threading.Lock()


@dataclass(eq=False)
class PublicKey:
    """A Paillier public key: the modulus ``n`` and the randomness base ``h_s``."""

    n: int
    hs: int
    nsquare: int = field(init=False, repr=False)
    max_int: int = field(init=False, repr=False)
    _n: gmpy2.mpz = field(init=False, repr=False)
    _nsquare: gmpy2.mpz = field(init=False, repr=False)
    _hs: gmpy2.mpz = field(init=False, repr=False)
    _alpha_bits: int = field(init=False, repr=False)
    _table: list[list[gmpy2.mpz]] | None = field(init=False, default=None, repr=False)
    _pool: _RandomizerPool | None = field(init=False, default=None, repr=False)
    _uses: int = field(init=False, default=0, repr=False)

    def __post_init__(self) -> None:
        if self.n < 2**255 or self.n % 2 == 0:
            raise DeltaMLValueError("not a Paillier modulus")
        self.nsquare = self.n * self.n
        if not 1 < self.hs < self.nsquare:
            raise DeltaMLValueError("randomness base out of range")
        self.max_int = self.n // 3
        self._n = gmpy2.mpz(self.n)
        self._nsquare = gmpy2.mpz(self.nsquare)
        self._hs = gmpy2.mpz(self.hs)
        self._alpha_bits = (self.n.bit_length() + 1) // 2

    @property
    def key_bits(self) -> int:
        return self.n.bit_length()

    @property
    def ciphertext_bytes(self) -> int:
        return (self.nsquare.bit_length() + 7) // 8

    @property
    def fingerprint(self) -> str:
        """Short stable identifier: the first 16 hex digits of SHA-256 over ``n`` and ``h_s``."""
        digest = hashlib.sha256(f"{self.n:x}:{self.hs:x}".encode()).hexdigest()
        return digest[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.n == other.n and self.hs == other.hs

    def __hash__(self) -> int:
        return hash((self.n, self.hs))

    def __getstate__(self) -> dict[str, int]:
        """Pickle ``n`` and ``h_s`` only: the rest is derived, the window table can be 16 MB."""
        return {"n": self.n, "hs": self.hs}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.n, self.hs = int(state["n"]), int(state["hs"])
        self._table, self._uses, self._pool = None, 0, None
        self.__post_init__()

    # -- randomness -------------------------------------------------------------------
    def random_factor(self) -> gmpy2.mpz:
        """A fresh ``r^n mod n²`` (``r = h^α``): multiplying by it re-randomizes a ciphertext."""
        return self._fresh()[0]

    def _fresh(self) -> tuple[gmpy2.mpz, int]:
        if self._pool is not None:
            item = self._pool.take()
            if item is not None:
                return item
        alpha = secrets.randbits(self._alpha_bits)
        return self._factor(alpha), alpha

    def random_factor_with_exponent(self) -> tuple[gmpy2.mpz, int]:
        """A fresh ``h_s^α mod n²`` and its exponent ``α``.

        ``r = h^α`` itself needs ``h``, which only the key holder knows; ``α`` serves
        the same purpose for anyone who must later check a re-randomization
        (``c' == c · h_s^α mod n²``, see :func:`check_rerandomization`), and revealing
        it after the fact reveals nothing about any plaintext.
        """
        return self._fresh()

    def factor_of_exponent(self, alpha: int) -> gmpy2.mpz:
        """``h_s^α mod n²``, by direct exponentiation (for checking, not for hiding)."""
        return gmpy2.powmod(self._hs, alpha, self._nsquare)

    def _factor(self, alpha: int) -> gmpy2.mpz:
        if self._table is None:
            self._uses += 1
            if self._uses <= _TABLE_AFTER_USES:
                return gmpy2.powmod(self._hs, alpha, self._nsquare)
            self._table = self._build_table()
            # A key used this much keeps being used: precompute on the other core too,
            # until the key is dropped (the pool holds no reference to the key).
            self._pool = _RandomizerPool(self._hs, self._nsquare, self._alpha_bits)
            weakref.finalize(self, self._pool.close)
        acc = gmpy2.mpz(1)
        mod = self._nsquare
        mask = (1 << _WINDOW_BITS) - 1
        for row in self._table:
            digit = alpha & mask
            if digit:
                acc = acc * row[digit] % mod
            alpha >>= _WINDOW_BITS
        return acc

    def _build_table(self) -> list[list[gmpy2.mpz]]:
        """Rows ``i`` hold ``h_s^(v·2^(8i))`` for ``v < 256``: one product per window."""
        table = []
        base = self._hs
        mod = self._nsquare
        for _ in range(-(-self._alpha_bits // _WINDOW_BITS)):
            row = [gmpy2.mpz(1), base]
            for _ in range(2, 1 << _WINDOW_BITS):
                row.append(row[-1] * base % mod)
            table.append(row)
            base = row[-1] * base % mod
        return table

    # -- raw integer operations ------------------------------------------------------
    def raw_encrypt(self, plaintext: int) -> gmpy2.mpz:
        """Encrypt an integer already reduced to ``[0, n)``; always randomized."""
        if not 0 <= plaintext < self.n:
            raise DeltaMLValueError("raw plaintext must lie in [0, n)")
        return (1 + plaintext * self._n) % self._nsquare * self.random_factor() % self._nsquare

    def encode_signed(self, value: int) -> int:
        """Map a signed integer to ``Z_n`` (negative values wrap to ``n - |v|``)."""
        if abs(value) > self.max_int:
            raise PrecisionBudgetError(
                f"integer of {abs(value).bit_length()} bits exceeds the "
                f"{self.max_int.bit_length()}-bit precision budget of this key"
            )
        return value % self.n

    def to_dict(self) -> dict[str, str]:
        return {"n": format(self.n, "x"), "hs": format(self.hs, "x")}

    @classmethod
    def of(cls, n: int, hs: int) -> PublicKey:
        """The one live object for the key ``(n, h_s)``: decoding a key a party already
        holds gives back that object, with its window table and randomizer pool,
        instead of a copy that would build its own (16 MB and a thread each)."""
        with _INTERNED_LOCK:
            key = _INTERNED.get((n, hs))
            if key is None:
                key = cls(n, hs)
                _INTERNED[(n, hs)] = key
            return key

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> PublicKey:
        try:
            return cls.of(int(data["n"], 16), int(data["hs"], 16))
        except (KeyError, TypeError, ValueError) as exc:
            raise DeltaMLValueError(f"malformed public key: {exc}") from None


@dataclass(eq=False)
class PrivateKey:
    """The buyer's Paillier private key (the factors of ``n``)."""

    public_key: PublicKey
    p: int
    q: int
    _n_inv_mod_phi: gmpy2.mpz = field(init=False, repr=False)
    _root_p: gmpy2.mpz = field(init=False, repr=False)
    _root_q: gmpy2.mpz = field(init=False, repr=False)
    _q_inv_mod_p: gmpy2.mpz = field(init=False, repr=False)
    _crt: _DecryptionCRT = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.p * self.q != self.public_key.n:
            raise DeltaMLValueError("the factors do not match the public key")
        # (1, n) also multiplies to n, and phe/gmpy2 would fail on it with ZeroDivisionError.
        if self.p == self.q or not (gmpy2.is_prime(self.p) and gmpy2.is_prime(self.q)):
            raise DeltaMLValueError("the factors of a Paillier key must be two distinct primes")
        phi = (self.p - 1) * (self.q - 1)
        try:
            self._n_inv_mod_phi = gmpy2.invert(gmpy2.mpz(self.public_key.n), phi)
        except ZeroDivisionError:  # gcd(n, φ(n)) > 1: p divides q − 1 or the reverse
            raise DeltaMLValueError("n is not invertible modulo φ(n): no Paillier key") from None
        # n-th roots by CRT (see randomness_of); gcd(n, φ) = 1 makes both inverses exist.
        p, q = gmpy2.mpz(self.p), gmpy2.mpz(self.q)
        self._root_p = gmpy2.invert(gmpy2.mpz(self.public_key.n), p - 1)
        self._root_q = gmpy2.invert(gmpy2.mpz(self.public_key.n), q - 1)
        self._q_inv_mod_p = gmpy2.invert(q, p)
        self._crt = _DecryptionCRT(
            p, q, p * p, q * q, _h_function(p, q), _h_function(q, p), gmpy2.invert(p, q)
        )

    def __repr__(self) -> str:  # never print the factors
        return f"PrivateKey(fingerprint={self.public_key.fingerprint})"

    def __getstate__(self) -> dict[str, object]:
        """Pickle the public key and the factors; the phe key and the inverse are rebuilt."""
        return {"public_key": self.public_key, "p": self.p, "q": self.q}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.public_key = state["public_key"]  # type: ignore[assignment]
        self.p, self.q = int(state["p"]), int(state["q"])  # type: ignore[call-overload]
        self.__post_init__()

    def raw_decrypt(self, ciphertext: int) -> int:
        """CRT decryption to ``[0, n)``, on gmpy2 directly (phe's, less its conversions)."""
        crt = self._crt
        c = gmpy2.mpz(ciphertext)
        return int(crt.combine(crt.half_p(c % crt.psquare), crt.half_q(c % crt.qsquare)))

    def decrypt_with_randomness(self, ciphertext: int) -> tuple[int, int]:
        """:meth:`raw_decrypt` and :meth:`randomness_of` at once: ``(m, r)``, a proven opening.

        Both are CRT computations that start from ``c mod p²`` and ``c mod q²``; this
        reduces ``c`` once for all four half-size exponentiations.
        """
        crt = self._crt
        c = gmpy2.mpz(ciphertext)
        c_p, c_q = c % crt.psquare, c % crt.qsquare
        m = crt.combine(crt.half_p(c_p), crt.half_q(c_q))
        p, q = crt.p, crt.q
        r_p = gmpy2.powmod(c_p % p, self._root_p, p)
        r_q = gmpy2.powmod(c_q % q, self._root_q, q)
        return int(m), int(r_q + q * ((r_p - r_q) * self._q_inv_mod_p % p))

    def decode_signed(self, plaintext: int) -> int:
        """Inverse of :meth:`PublicKey.encode_signed`; refuses values in the overflow band."""
        pk = self.public_key
        if plaintext <= pk.max_int:
            return plaintext
        if plaintext >= pk.n - pk.max_int:
            return plaintext - pk.n
        raise PrecisionBudgetError("decrypted value lies in the overflow band: it overflowed")

    def decrypt_signed(self, ciphertext: int) -> int:
        return self.decode_signed(self.raw_decrypt(ciphertext))

    def randomness_of(self, ciphertext: int, plaintext: int) -> int:
        r"""The ``r`` with ``c = (1 + m·n)·r^n mod n²``: a proof that ``c`` decrypts to ``m``.

        ``r^n = c·(1 + m·n)^{-1}`` is an ``n``-th residue and ``r^n ≡ c (mod n)``, so
        ``r = (c mod n)^{n^{-1} mod φ(n)} mod n``. Computed by CRT: the root modulo
        ``p`` is ``c^{n^{-1} mod (p−1)}``, likewise modulo ``q``, then
        ``r = r_q + q·((r_p − r_q)·q^{-1} mod p)`` — two half-size exponentiations
        with half-size exponents, 5× faster than one full one at 2048 bits
        (0.92 ms against 4.6 ms). ``plaintext`` is not needed (``1 + m·n ≡ 1 mod n``);
        it is kept in the signature for symmetry with :func:`check_decryption`,
        which anyone can use to check the proof.
        """
        c = gmpy2.mpz(ciphertext)
        p, q = gmpy2.mpz(self.p), gmpy2.mpz(self.q)
        r_p = gmpy2.powmod(c % p, self._root_p, p)
        r_q = gmpy2.powmod(c % q, self._root_q, q)
        return int(r_q + q * ((r_p - r_q) * self._q_inv_mod_p % p))

    def _randomness_of_direct(self, ciphertext: int) -> int:
        """Reference for :meth:`randomness_of`: one exponentiation modulo ``n``."""
        n = self.public_key.n
        return int(gmpy2.powmod(gmpy2.mpz(ciphertext) % n, self._n_inv_mod_phi, n))

    def to_dict(self) -> dict[str, object]:
        return {
            "public_key": self.public_key.to_dict(),
            "p": format(self.p, "x"),
            "q": format(self.q, "x"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PrivateKey:
        try:
            pub = PublicKey.from_dict(data["public_key"])  # type: ignore[arg-type]
            return cls(pub, int(str(data["p"]), 16), int(str(data["q"]), 16))
        except (KeyError, TypeError, ValueError) as exc:
            raise DeltaMLValueError(f"malformed private key: {exc}") from None


@dataclass(frozen=True)
class _DecryptionCRT:
    r"""Precomputed values for CRT decryption (as in phe, Paillier 1999 §7).

    ``m ≡ L_p(c^{p−1} mod p²)·h_p (mod p)`` with ``L_p(x) = (x − 1)/p`` and
    ``h_p = L_p(g^{p−1} mod p²)^{−1} mod p``, likewise modulo ``q``; the two halves are
    joined by ``m = m_p + p·((m_q − m_p)·p^{−1} mod q)``.
    """

    p: gmpy2.mpz
    q: gmpy2.mpz
    psquare: gmpy2.mpz
    qsquare: gmpy2.mpz
    hp: gmpy2.mpz
    hq: gmpy2.mpz
    p_inv_mod_q: gmpy2.mpz

    def half_p(self, c_p: gmpy2.mpz) -> gmpy2.mpz:
        p = self.p
        return (gmpy2.powmod(c_p, p - 1, self.psquare) - 1) // p * self.hp % p

    def half_q(self, c_q: gmpy2.mpz) -> gmpy2.mpz:
        q = self.q
        return (gmpy2.powmod(c_q, q - 1, self.qsquare) - 1) // q * self.hq % q

    def combine(self, m_p: gmpy2.mpz, m_q: gmpy2.mpz) -> gmpy2.mpz:
        return m_p + (m_q - m_p) * self.p_inv_mod_q % self.q * self.p


def _h_function(p: gmpy2.mpz, q: gmpy2.mpz) -> gmpy2.mpz:
    """``L_p(g^{p−1} mod p²)^{−1} mod p`` for ``g = n + 1``, ``n = p·q``."""
    psquare = p * p
    x = gmpy2.powmod(p * q + 1, p - 1, psquare)
    return gmpy2.invert((x - 1) // p, p)


def check_decryption(
    public_key: PublicKey, ciphertext: int, plaintext: int, randomness: int
) -> bool:
    """Check a proof of decryption: ``c == (1 + m·n)·r^n mod n²`` with ``m`` in ``[0, n)``."""
    n, n2 = public_key.n, public_key.nsquare
    if not (0 <= plaintext < n and 0 < randomness < n and 0 < ciphertext < n2):
        return False
    expected = (1 + plaintext * n) % n2 * gmpy2.powmod(randomness, n, n2) % n2
    return int(expected) == int(ciphertext)


KEY_FINGERPRINT_DOMAIN = b"deltaml-paillier-v2:"


def key_fingerprint(public_key: PublicKey) -> bytes:
    """32-byte fingerprint of ``public_key`` as the Marketplace contract records it.

    SHA-256 of ``b"deltaml-paillier-v2:"``, the modulus ``n`` as big-endian bytes
    (``L = ceil(bits(n) / 8)`` of them) and the randomness base ``h_s`` in ``2L``
    big-endian bytes. The buyer names it when it escrows a request (``keyHash``)
    and each owner encrypts only under a key with this fingerprint.

    ``h_s`` is part of it on purpose: encryption computes ``r^n`` as a power of
    ``h_s``, so whoever chooses ``h_s`` chooses the randomness. With
    ``h_s = 1 + k·n`` every "ciphertext" is ``1 + (m + α·k)·n``, and the low bits
    of ``m`` can be read by anyone who knows ``k`` — no private key needed.
    """
    n = int(public_key.n)
    size = (n.bit_length() + 7) // 8
    return hashlib.sha256(
        KEY_FINGERPRINT_DOMAIN
        + n.to_bytes(size, "big")
        + int(public_key.hs).to_bytes(2 * size, "big")
    ).digest()


def generate_keypair(
    key_bits: int = 2048, *, allow_test_keys: bool = False
) -> tuple[PublicKey, PrivateKey]:
    """Generate a Paillier key pair of ``key_bits`` (2048 default, 3072 selectable).

    Smaller keys (512–1024 bits) are refused unless a test opts in
    (``allow_test_keys`` or :data:`TEST_KEYS_ENV`, see :func:`check_key_size`):
    they exist to make tests fast and protect nothing.
    """
    check_key_size(key_bits, allow_test_keys=allow_test_keys)
    phe_pub, phe_priv = _phe.generate_paillier_keypair(n_length=key_bits)
    n = phe_pub.n
    nsquare = n * n
    while True:
        h = secrets.randbelow(n - 2) + 2
        if gmpy2.gcd(h, n) == 1:
            break
    hs = int(gmpy2.powmod(h, n, nsquare))
    public = PublicKey.of(n, hs)
    return public, PrivateKey(public, phe_priv.p, phe_priv.q)
