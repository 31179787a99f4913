"""Compact, validated serialization of encrypted vectors for messages.

The public key appears once per message (or only its fingerprint, when the
receiver already knows the key), never once per number. Each vector is its
fixed-point exponent, its precision bound as a hex string (it can be thousands
of bits long), its length, and its ciphertexts as one base64 string of
fixed-width big-endian integers, ``public_key.ciphertext_bytes`` bytes each::

    {
      "format": "deltaml-vectors/1",
      "key": {"n": "<hex>", "hs": "<hex>"},       # or "key_fingerprint": "<16 hex>"
      "vectors": [
        {"exponent": 40, "bound": "<hex>", "length": 11, "ciphertexts": "<base64>"}
      ]
    }

Everything is JSON-friendly. :func:`unpack_vectors` validates every field and
raises :class:`~deltaml.errors.DeltaMLValueError` (never another exception
type) for: a malformed structure, base64 or hex; a ciphertext blob whose length
is not ``length × ciphertext_bytes``; a ciphertext that is 0, at least ``n²`` or
not coprime with ``n``; an unknown key fingerprint; a key of an unsupported
size; a negative (or absurdly large) exponent; a bound at or beyond the key's
budget ``max_int``.

The bound is the sender's claim and cannot be checked against ciphertexts; a
receiver that must rely on it (for example before a refresh) derives it from
its own knowledge, as :meth:`EncryptedVector.unmask` does.

Measured sizes
--------------
One vector of 11 values, 2048-bit key (512-byte ciphertexts), exponent 40;
JSON is ``json.dumps(...)`` in UTF-8 (a byte or two varies with the key):

=========================================================================  ======
encoding                                                                    bytes
=========================================================================  ======
:func:`pack_vectors`, key included (n and h_s in hex)                        9,194
:func:`pack_vectors`, key fingerprint only                                   7,670
raw ciphertexts alone (11 × 512; :func:`ciphertexts_to_bytes`)               5,632
``pickle.dumps`` of a list of 11 ``phe.EncryptedNumber`` (key memoized)      7,463
11 × ``pickle.dumps`` of one ``phe.EncryptedNumber`` (key in each)          22,319
phe's documented JSON (key once, ciphertexts as decimal strings)            14,959
=========================================================================  ======

(phe 1.5.0, Python 3.11.7, pickle protocol 4.) Pickling a whole list is
smaller than our JSON only because pickle stores binary integers and base64
costs 4/3; it also executes code on load, so it is no format for messages.
A binary transport can send :func:`ciphertexts_to_bytes` as is.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence

import gmpy2

from deltaml.crypto.paillier import (
    SUPPORTED_KEY_BITS,
    TEST_KEY_BITS,
    PublicKey,
    check_key_size,
)
from deltaml.crypto.vector import EncryptedVector
from deltaml.errors import DeltaMLValueError, KeyMismatchError

FORMAT = "deltaml-vectors/1"

#: Largest exponent accepted from a message: far above any real fixed-point
#: scale, low enough that decoding cannot be made to allocate absurd integers.
MAX_EXPONENT = 1 << 16

_KEY_BITS = frozenset(SUPPORTED_KEY_BITS + TEST_KEY_BITS)
_HEX = re.compile(r"[0-9a-fA-F]+")
_VECTOR_FIELDS = frozenset({"exponent", "bound", "length", "ciphertexts"})


# -- bytes level ----------------------------------------------------------------------
def ciphertexts_to_bytes(public_key: PublicKey, ciphertexts: Sequence[int]) -> bytes:
    """Concatenate ciphertexts as big-endian integers of ``public_key.ciphertext_bytes`` each."""
    width = public_key.ciphertext_bytes
    n2 = public_key.nsquare
    out = bytearray()
    for c in ciphertexts:
        value = int(c)
        if not 0 < value < n2:
            raise DeltaMLValueError("ciphertext out of range [1, n²)")
        out += value.to_bytes(width, "big")
    return bytes(out)


def ciphertexts_from_bytes(public_key: PublicKey, blob: bytes) -> list[gmpy2.mpz]:
    """Inverse of :func:`ciphertexts_to_bytes`; checks every ciphertext.

    A valid ciphertext lies in ``[1, n²)`` and is coprime with ``n`` (Paillier
    ciphertexts are units modulo ``n²``; a non-unit reveals a factor of ``n`` and
    cannot be negated or re-randomized).
    """
    width = public_key.ciphertext_bytes
    if len(blob) % width:
        raise DeltaMLValueError(
            f"ciphertext blob of {len(blob)} bytes is not a multiple of {width} bytes "
            f"(the ciphertext size of a {public_key.key_bits}-bit key)"
        )
    n, n2 = public_key._n, public_key._nsquare
    out = []
    for index, start in enumerate(range(0, len(blob), width)):
        c = gmpy2.mpz(int.from_bytes(blob[start : start + width], "big"))
        if not 0 < c < n2:
            raise DeltaMLValueError(f"ciphertext {index} is out of range [1, n²)")
        if gmpy2.gcd(c, n) != 1:
            raise DeltaMLValueError(f"ciphertext {index} is not coprime with n")
        out.append(c)
    return out


# -- messages ---------------------------------------------------------------------------
def pack_vectors(
    vectors: Sequence[EncryptedVector], *, include_key: bool = True
) -> dict[str, object]:
    """A JSON-friendly message holding ``vectors``, which must share one public key.

    With ``include_key=False`` only the key's fingerprint is sent: the receiver
    must pass the key to :func:`unpack_vectors` in ``known_keys``.
    """
    if not vectors:
        raise DeltaMLValueError("nothing to pack")
    key = vectors[0].public_key
    packed = []
    for vector in vectors:
        if vector.public_key != key:
            raise KeyMismatchError("the vectors of one message must share one public key")
        packed.append(
            {
                "exponent": vector.exponent,
                "bound": format(vector.bound, "x"),
                "length": len(vector),
                "ciphertexts": base64.b64encode(
                    ciphertexts_to_bytes(key, vector.ciphertexts)
                ).decode("ascii"),
            }
        )
    message: dict[str, object] = {"format": FORMAT}
    if include_key:
        message["key"] = key.to_dict()
    else:
        message["key_fingerprint"] = key.fingerprint
    message["vectors"] = packed
    return message


def unpack_vectors(
    data: object, known_keys: Iterable[PublicKey] | Mapping[str, PublicKey] | None = None
) -> list[EncryptedVector]:
    """Validate and decode a message made by :func:`pack_vectors`.

    ``known_keys`` (public keys, or a mapping whose values are public keys)
    resolves a fingerprint-only message; when the message carries the key
    itself and an equal key is known, the known object is used, so that its
    window table is shared. Raises :class:`DeltaMLValueError` on any defect.
    """
    if not isinstance(data, Mapping):
        raise DeltaMLValueError("a vector message must be a JSON object")
    if data.get("format") != FORMAT:
        raise DeltaMLValueError(f"unsupported vector message format: expected {FORMAT!r}")
    if set(data) - {"format", "key", "key_fingerprint", "vectors"}:
        raise DeltaMLValueError("unexpected fields in the vector message")
    key = _resolve_key(data, _index_keys(known_keys))
    entries = data.get("vectors")
    if not isinstance(entries, list):
        raise DeltaMLValueError("'vectors' must be a list")
    return [_unpack_vector(key, entry, index) for index, entry in enumerate(entries)]


def _index_keys(
    known_keys: Iterable[PublicKey] | Mapping[str, PublicKey] | None,
) -> dict[str, PublicKey]:
    if known_keys is None:
        return {}
    keys = known_keys.values() if isinstance(known_keys, Mapping) else known_keys
    return {k.fingerprint: k for k in keys}


def _resolve_key(data: Mapping[str, object], known: dict[str, PublicKey]) -> PublicKey:
    has_key, has_fingerprint = "key" in data, "key_fingerprint" in data
    if has_key == has_fingerprint:
        raise DeltaMLValueError("a vector message needs exactly one of 'key' and 'key_fingerprint'")
    if has_fingerprint:
        fingerprint = data["key_fingerprint"]
        if not isinstance(fingerprint, str) or fingerprint not in known:
            raise DeltaMLValueError(f"unknown public key fingerprint {str(fingerprint)[:32]!r}")
        return known[fingerprint]
    raw = data["key"]
    if not isinstance(raw, Mapping) or set(raw) != {"n", "hs"}:
        raise DeltaMLValueError("'key' must be an object with exactly 'n' and 'hs'")
    max_bits = max(_KEY_BITS)
    n = _parse_hex(raw["n"], "key n", max_bits)
    hs = _parse_hex(raw["hs"], "key hs", 2 * max_bits)
    check_key_size(n.bit_length())  # below 2048 bits only where a test opted in
    key = PublicKey.of(n, hs)  # one object per key; checks n odd and 1 < hs < n²
    if gmpy2.gcd(key._hs, key._n) != 1:
        raise DeltaMLValueError("key hs is not coprime with n")
    found = known.get(key.fingerprint)
    return found if found is not None and found == key else key


def _unpack_vector(key: PublicKey, entry: object, index: int) -> EncryptedVector:
    where = f"vector {index}"
    if not isinstance(entry, Mapping) or set(entry) != _VECTOR_FIELDS:
        raise DeltaMLValueError(f"{where} must be an object with exactly {sorted(_VECTOR_FIELDS)}")
    exponent = entry["exponent"]
    if type(exponent) is not int or not 0 <= exponent <= MAX_EXPONENT:
        raise DeltaMLValueError(f"{where}: exponent must be an integer in [0, {MAX_EXPONENT}]")
    length = entry["length"]
    if type(length) is not int or length < 0:
        raise DeltaMLValueError(f"{where}: length must be a non-negative integer")
    bound = _parse_hex(entry["bound"], f"{where} bound", key.key_bits)
    if bound >= key.max_int:
        raise DeltaMLValueError(
            f"{where}: bound of {bound.bit_length()} bits exceeds the key's precision budget"
        )
    text = entry["ciphertexts"]
    if not isinstance(text, str):
        raise DeltaMLValueError(f"{where}: ciphertexts must be a base64 string")
    try:
        blob = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise DeltaMLValueError(f"{where}: ciphertexts are not valid base64") from None
    if len(blob) != length * key.ciphertext_bytes:
        raise DeltaMLValueError(
            f"{where}: {len(blob)} bytes of ciphertexts, expected {length} × {key.ciphertext_bytes}"
        )
    try:
        ciphertexts = ciphertexts_from_bytes(key, blob)
    except DeltaMLValueError as exc:
        raise DeltaMLValueError(f"{where}: {exc}") from None
    return EncryptedVector(key, ciphertexts, exponent, bound)


def _parse_hex(value: object, what: str, max_bits: int) -> int:
    """A non-negative hex integer of at most ``max_bits`` bits (length checked before parsing)."""
    if not isinstance(value, str) or len(value) > -(-max_bits // 4) or not _HEX.fullmatch(value):
        raise DeltaMLValueError(f"{what} must be a hex string of at most {max_bits} bits")
    return int(value, 16)
