"""Vector messages: the key once, compact ciphertexts, and strict validation."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from collections.abc import Callable
from typing import Any

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaml.crypto import EncryptedVector, PrivateKey, PublicKey
from deltaml.crypto.serialization import (
    FORMAT,
    MAX_EXPONENT,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    pack_vectors,
    unpack_vectors,
)
from deltaml.errors import DeltaMLValueError, KeyMismatchError

FAST = settings(max_examples=30, deadline=None)
Keys = tuple[PublicKey, PrivateKey]


def wire(message: dict[str, object]) -> Any:
    """What the receiver gets: the message through JSON text."""
    return json.loads(json.dumps(message))


def assert_same(a: EncryptedVector, b: EncryptedVector) -> None:
    assert a.public_key == b.public_key
    assert (a.exponent, a.bound) == (b.exponent, b.bound)
    assert [int(c) for c in a.ciphertexts] == [int(c) for c in b.ciphertexts]


@FAST
@given(st.data())
def test_round_trip(keys512: Keys, data: st.DataObject) -> None:
    pk, sk = keys512
    shapes = data.draw(st.lists(st.integers(0, 6), min_size=1, max_size=4))
    vectors = []
    for size in shapes:
        ints = data.draw(st.lists(st.integers(-(2**300), 2**300), min_size=size, max_size=size))
        exponent = data.draw(st.integers(0, 200))
        vectors.append(EncryptedVector.encrypt_ints(pk, ints, exponent))
    message = wire(pack_vectors(vectors))
    back = unpack_vectors(message)
    assert len(back) == len(vectors)
    for original, received in zip(vectors, back, strict=True):
        assert_same(original, received)
        assert received.decrypt_ints(sk) == original.decrypt_ints(sk)


def test_the_key_is_sent_once(keys512: Keys) -> None:
    pk, _ = keys512
    vectors = [EncryptedVector.encrypt_ints(pk, [1, 2, 3], 0) for _ in range(4)]
    text = json.dumps(pack_vectors(vectors))
    assert text.count(format(pk.n, "x")) == 1
    assert text.count(format(pk.hs, "x")) == 1
    body = 4 * len(base64.b64encode(b"\0" * 3 * pk.ciphertext_bytes))
    key = len(format(pk.n, "x")) + len(format(pk.hs, "x"))
    assert len(text) < body + key + 400
    short = json.dumps(pack_vectors(vectors, include_key=False))
    assert format(pk.n, "x") not in short
    assert len(short) < body + 400


def test_fingerprint_messages_need_a_known_key(keys512: Keys, keys768: Keys) -> None:
    pk, sk = keys512
    v = EncryptedVector.encrypt_ints(pk, [4, -5], 12)
    message = wire(pack_vectors([v], include_key=False))
    assert message["key_fingerprint"] == pk.fingerprint
    for known in ([pk], [keys768[0], pk], {"buyer": pk}, (k for k in [pk])):
        (back,) = unpack_vectors(message, known_keys=known)
        assert back.public_key is pk  # the receiver's own object: its window table is shared
        assert back.decrypt_ints(sk) == [4, -5]
    for known in (None, [], [keys768[0]]):
        with pytest.raises(DeltaMLValueError, match="unknown public key fingerprint"):
            unpack_vectors(message, known_keys=known)


def test_an_embedded_key_reuses_the_live_object(keys512: Keys) -> None:
    pk, _ = keys512
    message = wire(pack_vectors([EncryptedVector.encrypt_ints(pk, [1], 0)]))
    assert unpack_vectors(message, known_keys=[pk])[0].public_key is pk
    # Without known keys too: one object per key while it is alive.
    assert unpack_vectors(message)[0].public_key is pk


def test_pack_refuses_mixed_keys_and_nothing(keys512: Keys, keys768: Keys) -> None:
    a = EncryptedVector.encrypt_ints(keys512[0], [1], 0)
    b = EncryptedVector.encrypt_ints(keys768[0], [1], 0)
    with pytest.raises(KeyMismatchError):
        pack_vectors([a, b])
    with pytest.raises(DeltaMLValueError):
        pack_vectors([])


def test_bytes_helpers(keys512: Keys) -> None:
    pk, _ = keys512
    v = EncryptedVector.encrypt_ints(pk, [1, -2, 3], 0)
    blob = ciphertexts_to_bytes(pk, v.ciphertexts)
    assert len(blob) == 3 * pk.ciphertext_bytes
    assert ciphertexts_from_bytes(pk, blob) == v.ciphertexts
    assert ciphertexts_from_bytes(pk, b"") == []
    for bad in (blob[:-1], blob + b"\1"):
        with pytest.raises(DeltaMLValueError, match="not a multiple"):
            ciphertexts_from_bytes(pk, bad)
    for bad_c in (0, pk.nsquare, -1):
        with pytest.raises(DeltaMLValueError):
            ciphertexts_to_bytes(pk, [bad_c])


# -- every rejection ---------------------------------------------------------------------------
def _replace_ciphertext(message: dict[str, Any], pk: PublicKey, value: int) -> None:
    entry = message["vectors"][0]
    blob = bytearray(base64.b64decode(entry["ciphertexts"]))
    width = pk.ciphertext_bytes
    blob[:width] = value.to_bytes(width, "big")
    entry["ciphertexts"] = base64.b64encode(bytes(blob)).decode()


def _set(path: str, value: object) -> Callable[[dict[str, Any], Keys], None]:
    def mutate(message: dict[str, Any], keys: Keys) -> None:
        *parents, last = path.split(".")
        node: Any = message
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if value is _DELETE:
            del node[key]
        else:
            node[key] = value(keys) if callable(value) else value

    return mutate


_DELETE = object()


def _truncate_blob(message: dict[str, Any], keys: Keys) -> None:
    entry = message["vectors"][0]
    blob = base64.b64decode(entry["ciphertexts"])
    entry["ciphertexts"] = base64.b64encode(blob[:-1]).decode()


def _drop_one_ciphertext(message: dict[str, Any], keys: Keys) -> None:
    entry = message["vectors"][0]
    blob = base64.b64decode(entry["ciphertexts"])
    entry["ciphertexts"] = base64.b64encode(blob[: -keys[0].ciphertext_bytes]).decode()


REJECTIONS: dict[str, Callable[[dict[str, Any], Keys], None]] = {
    "wrong format": _set("format", "deltaml-vectors/0"),
    "no format": _set("format", _DELETE),
    "extra top-level field": _set("extra", 1),
    "no vectors": _set("vectors", _DELETE),
    "vectors not a list": _set("vectors", {"0": 1}),
    "vector not an object": _set("vectors.0", "abc"),
    "vector field missing": _set("vectors.0.length", _DELETE),
    "vector field extra": _set("vectors.0.note", "x"),
    "both key and fingerprint": _set("key_fingerprint", lambda k: k[0].fingerprint),
    "no key at all": _set("key", _DELETE),
    "key not an object": _set("key", "abc"),
    "key with extra field": _set("key.g", "2"),
    "key n not hex": _set("key.n", "xyz"),
    "key n with 0x": _set("key.n", lambda k: "0x" + format(k[0].n, "x")),
    "key n negative": _set("key.n", lambda k: "-" + format(k[0].n, "x")),
    "key n empty": _set("key.n", ""),
    "key n as int": _set("key.n", lambda k: k[0].n),
    "key n too long": _set("key.n", "f" * 100_000),
    "key n even": _set("key.n", lambda k: format(k[0].n + 1, "x")),
    "key of unsupported size": _set("key.n", lambda k: format(2**600 + 1, "x")),
    "key hs out of range": _set("key.hs", "1"),
    "key hs not coprime": _set("key.hs", lambda k: format(k[1].p, "x")),
    "exponent negative": _set("vectors.0.exponent", -1),
    "exponent float": _set("vectors.0.exponent", 40.0),
    "exponent string": _set("vectors.0.exponent", "40"),
    "exponent bool": _set("vectors.0.exponent", True),
    "exponent null": _set("vectors.0.exponent", None),
    "exponent huge": _set("vectors.0.exponent", MAX_EXPONENT + 1),
    "length negative": _set("vectors.0.length", -1),
    "length string": _set("vectors.0.length", "2"),
    "length too large": _set("vectors.0.length", 3),
    "length too small": _set("vectors.0.length", 1),
    "bound not hex": _set("vectors.0.bound", "zz"),
    "bound negative": _set("vectors.0.bound", "-1"),
    "bound empty": _set("vectors.0.bound", ""),
    "bound as int": _set("vectors.0.bound", 5),
    "bound at the budget": _set("vectors.0.bound", lambda k: format(k[0].max_int, "x")),
    "bound far too long": _set("vectors.0.bound", "1" + "0" * 10_000),
    "ciphertexts not a string": _set("vectors.0.ciphertexts", ["AAAA"]),
    "ciphertexts bad characters": _set("vectors.0.ciphertexts", "!!!!"),
    "ciphertexts bad padding": _set("vectors.0.ciphertexts", "QUJD="),
    "ciphertexts not ascii": _set("vectors.0.ciphertexts", "ééé"),
    "ciphertexts with whitespace": _set("vectors.0.ciphertexts", lambda k: "AAAA AAAA"),
    "ciphertext blob truncated": _truncate_blob,
    "one ciphertext missing": _drop_one_ciphertext,
    "ciphertext zero": lambda m, k: _replace_ciphertext(m, k[0], 0),
    "ciphertext n squared": lambda m, k: _replace_ciphertext(m, k[0], k[0].nsquare),
    "ciphertext above n squared": lambda m, k: _replace_ciphertext(
        m, k[0], 256 ** k[0].ciphertext_bytes - 1
    ),
    "ciphertext multiple of p": lambda m, k: _replace_ciphertext(m, k[0], k[1].p * 12345),
    "ciphertext multiple of n": lambda m, k: _replace_ciphertext(m, k[0], k[0].n * 3),
}


@pytest.fixture(scope="module")
def valid_message(keys512: Keys) -> dict[str, Any]:
    pk, _ = keys512
    return wire(pack_vectors([EncryptedVector.encrypt_ints(pk, [10, -20], 8)]))


def test_the_valid_message_is_accepted(keys512: Keys, valid_message: dict[str, Any]) -> None:
    (v,) = unpack_vectors(copy.deepcopy(valid_message))
    assert v.decrypt_ints(keys512[1]) == [10, -20]
    assert valid_message["format"] == FORMAT


@pytest.mark.parametrize("name", list(REJECTIONS))
def test_rejections(keys512: Keys, valid_message: dict[str, Any], name: str) -> None:
    message = copy.deepcopy(valid_message)
    REJECTIONS[name](message, keys512)
    assert message != valid_message
    with pytest.raises(DeltaMLValueError):
        unpack_vectors(message)


def test_not_a_message_at_all() -> None:
    for bad in (None, [], "text", 3, b"bytes"):
        with pytest.raises(DeltaMLValueError):
            unpack_vectors(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
PATHS = [
    "format",
    "key",
    "key.n",
    "key.hs",
    "vectors",
    "vectors.0",
    "vectors.0.exponent",
    "vectors.0.bound",
    "vectors.0.length",
    "vectors.0.ciphertexts",
]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(PATHS), json_values)
def test_junk_anywhere_raises_only_our_value_error(
    keys512: Keys, valid_message: dict[str, Any], path: str, junk: object
) -> None:
    message = copy.deepcopy(valid_message)
    _set(path, junk)(message, keys512)
    with contextlib.suppress(DeltaMLValueError):  # anything else fails the test
        unpack_vectors(message)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_random_ciphertext_bytes_are_accepted_only_if_valid(
    keys512: Keys, valid_message: dict[str, Any], data: st.DataObject
) -> None:
    pk, _ = keys512
    width = pk.ciphertext_bytes
    raw = data.draw(st.binary(min_size=2 * width, max_size=2 * width))
    message = copy.deepcopy(valid_message)
    message["vectors"][0]["ciphertexts"] = base64.b64encode(raw).decode()
    values = [int.from_bytes(raw[i : i + width], "big") for i in (0, width)]
    valid = all(0 < c < pk.nsquare and gmpy2.gcd(c, pk.n) == 1 for c in values)
    if valid:
        (v,) = unpack_vectors(message)
        assert [int(c) for c in v.ciphertexts] == values
    else:
        with pytest.raises(DeltaMLValueError):
            unpack_vectors(message)
