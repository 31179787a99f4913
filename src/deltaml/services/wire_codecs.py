"""The wire format's field codecs: how each declared field type is written and checked
on the way in (:mod:`deltaml.services.wire` builds message schemas from them)."""

from __future__ import annotations

import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.crypto.paillier import (
    SUPPORTED_KEY_BITS,
    TEST_KEY_BITS,
    WeakKeyError,
    check_key_size,
)
from deltaml.crypto.serialization import pack_vectors, unpack_vectors
from deltaml.errors import DeltaMLError, DeltaMLTypeError, DeltaMLValueError

#: Public keys a receiver already holds: the keys, or a mapping whose values are keys.
KnownKeys = Iterable[PublicKey] | Mapping[str, PublicKey]

_KEY_BITS = frozenset(SUPPORTED_KEY_BITS + TEST_KEY_BITS)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_ENVELOPE = frozenset({"kind", "fields"})


# -- errors ---------------------------------------------------------------------------
def _type_name(value: object) -> str:
    """The JSON-ish name of a value's type, for messages (never its repr: it may be huge)."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _short(text: str, limit: int = 40) -> str:
    """A quoted, shortened string for an error message (one line, bounded length)."""
    clipped = text if len(text) <= limit else text[:limit] + "…"
    return repr(clipped)


def _fail(where: str, problem: str) -> DeltaMLValueError:
    return DeltaMLValueError(f"{where}: {problem}")


# -- decoding context -----------------------------------------------------------------
@dataclass
class _Decoding:
    """Keys available to resolve vector fingerprints, by fingerprint."""

    keys: dict[str, PublicKey] = field(default_factory=dict)

    def learn(self, key: PublicKey) -> PublicKey:
        """Remember a key decoded from the message; an equal known key wins (shared tables)."""
        known = self.keys.setdefault(key.fingerprint, key)
        return known if known == key else key


def _index_keys(known_keys: KnownKeys | None) -> dict[str, PublicKey]:
    if known_keys is None:
        return {}
    keys = known_keys.values() if isinstance(known_keys, Mapping) else known_keys
    return {key.fingerprint: key for key in keys}


# -- codecs ---------------------------------------------------------------------------
class _Codec:
    """Encodes one declared field type to JSON and decodes (validates) it back."""

    def encode(self, value: object, where: str, include_key: bool) -> object:
        raise NotImplementedError

    def decode(self, data: object, where: str, ctx: _Decoding) -> object:
        raise NotImplementedError


class _Int(_Codec):
    def encode(self, value: object, where: str, include_key: bool) -> object:
        return value

    def decode(self, data: object, where: str, ctx: _Decoding) -> object:
        if type(data) is not int:
            raise _fail(where, f"expected int, got {_type_name(data)}")
        return data


class _Bool(_Codec):
    def encode(self, value: object, where: str, include_key: bool) -> object:
        return value

    def decode(self, data: object, where: str, ctx: _Decoding) -> object:
        if type(data) is not bool:
            raise _fail(where, f"expected bool, got {_type_name(data)}")
        return data


class _Str(_Codec):
    def encode(self, value: object, where: str, include_key: bool) -> object:
        return value

    def decode(self, data: object, where: str, ctx: _Decoding) -> object:
        if not isinstance(data, str):
            raise _fail(where, f"expected str, got {_type_name(data)}")
        return data


def _finite_float(value: object, where: str) -> float:
    """``value`` (an int or a float, not a bool) as a finite float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"expected float, got {_type_name(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise _fail(where, "integer too large for a float") from None
    if not math.isfinite(number):
        raise _fail(where, f"expected a finite float, got {number!r}")
    return number


class _Float(_Codec):
    """Floats travel as ``repr`` (json's choice), the shortest text that reads back exactly.

    A message may hold an ``int`` in a ``float`` field; it is sent as the equal float,
    which compares equal after the round trip.
    """

    def encode(self, value: object, where: str, include_key: bool) -> object:
        return _finite_float(value, where)

    def decode(self, data: object, where: str, ctx: _Decoding) -> object:
        return _finite_float(data, where)


@dataclass(frozen=True)
class _Optional(_Codec):
    inner: _Codec

    def encode(self, value: object, where: str, include_key: bool) -> object:
        return None if value is None else self.inner.encode(value, where, include_key)

    def decode(self, data: object, where: str, ctx: _Decoding) -> object:
        return None if data is None else self.inner.decode(data, where, ctx)


@dataclass(frozen=True)
class _Tuple(_Codec):
    item: _Codec

    def encode(self, value: object, where: str, include_key: bool) -> object:
        if not isinstance(value, tuple):
            raise DeltaMLTypeError(f"{where} must be a tuple, got {_type_name(value)}")
        return [self.item.encode(v, f"{where}[{i}]", include_key) for i, v in enumerate(value)]

    def decode(self, data: object, where: str, ctx: _Decoding) -> object:
        if not isinstance(data, list):
            raise _fail(where, f"expected a list, got {_type_name(data)}")
        return tuple(self.item.decode(v, f"{where}[{i}]", ctx) for i, v in enumerate(data))


def _unpack(data: object, where: str, ctx: _Decoding) -> list[EncryptedVector]:
    try:
        vectors = unpack_vectors(data, ctx.keys)
    except DeltaMLError as exc:
        raise _fail(where, str(exc)) from None
    for vector in vectors:
        ctx.learn(vector.public_key)
    return vectors


def _pack(vectors: list[EncryptedVector], where: str, include_key: bool) -> object:
    for vector in vectors:
        if not isinstance(vector, EncryptedVector):
            raise DeltaMLTypeError(f"{where} must hold EncryptedVector, got {_type_name(vector)}")
    try:
        return pack_vectors(vectors, include_key=include_key)
    except DeltaMLError as exc:
        raise _fail(where, str(exc)) from None


class _Vector(_Codec):
    def encode(self, value: object, where: str, include_key: bool) -> object:
        return _pack([typing.cast(EncryptedVector, value)], where, include_key)

    def decode(self, data: object, where: str, ctx: _Decoding) -> object:
        vectors = _unpack(data, where, ctx)
        if len(vectors) != 1:
            raise _fail(where, f"expected exactly one vector, got {len(vectors)}")
        return vectors[0]


class _Vectors(_Codec):
    """A tuple of vectors shares one packed object, so the key is sent once."""

    def encode(self, value: object, where: str, include_key: bool) -> object:
        if not isinstance(value, tuple):
            raise DeltaMLTypeError(f"{where} must be a tuple, got {_type_name(value)}")
        if not value:
            return []
        return _pack(list(value), where, include_key)

    def decode(self, data: object, where: str, ctx: _Decoding) -> object:
        if data == []:
            return ()
        vectors = _unpack(data, where, ctx)
        if not vectors:
            # One spelling per value: the empty tuple is always ``[]``.
            raise _fail(where, "an empty tuple of vectors must be sent as []")
        return tuple(vectors)


def _key_int(data: Mapping[str, object], name: str, max_bits: int, where: str) -> int:
    text = data[name]
    if (
        not isinstance(text, str)
        or not 0 < len(text) <= -(-max_bits // 4)
        or not _HEX_DIGITS.issuperset(text)
    ):
        raise _fail(where, f"key {name} must be a hex string of at most {max_bits} bits")
    return int(text, 16)


class _Key(_Codec):
    """A public key, checked as :func:`~deltaml.crypto.serialization.unpack_vectors` does."""

    def encode(self, value: object, where: str, include_key: bool) -> object:
        if not isinstance(value, PublicKey):
            raise DeltaMLTypeError(f"{where} must be a PublicKey, got {_type_name(value)}")
        return value.to_dict()

    def decode(self, data: object, where: str, ctx: _Decoding) -> object:
        if not isinstance(data, Mapping) or set(data) != {"n", "hs"}:
            raise _fail(where, "a public key must be an object with exactly 'n' and 'hs'")
        max_bits = max(_KEY_BITS)
        n = _key_int(data, "n", max_bits, where)
        hs = _key_int(data, "hs", 2 * max_bits, where)
        try:
            check_key_size(n.bit_length())  # below 2048 bits only where a test opted in
        except WeakKeyError as exc:
            raise _fail(where, str(exc)) from None
        try:
            key = PublicKey.of(n, hs)  # one object per key; checks n odd and 1 < hs < n²
        except DeltaMLError as exc:
            raise _fail(where, str(exc)) from None
        if math.gcd(hs, n) != 1:
            raise _fail(where, "key hs is not coprime with n")
        return ctx.learn(key)
