"""Canonical bodies, their digests, and Ethereum signatures over them.

Everything a party signs is a *body*: a JSON object with a ``kind`` (the message
or record kind) and its fields. Its canonical serialization is UTF-8 JSON with
sorted keys, no whitespace, ASCII only and no NaN (:func:`canonical_json`); floats
are written as Python writes them (the shortest decimal that reads back the same
double); integers are JSON integers except the ciphertext-sized ones (plaintexts,
randomness, re-randomization exponents), which are lower-case hex strings
(:func:`hex_ints`). Encrypted vectors appear in a
body only as a reference (:func:`vector_ref`): exponent, length and the SHA-256 of
the ciphertexts as fixed-width big-endian bytes
(:func:`~deltaml.crypto.serialization.ciphertexts_to_bytes`), so a signature binds
the exact ciphertexts while the ciphertexts themselves can be kept apart from the
public record (see :mod:`deltaml.evidence.transcript`).

A signature is EIP-191 (``personal_sign``, version ``E``) over the 32-byte
SHA-256 digest of the canonical body, made with the party's Ethereum account
(:func:`sign_body`); anyone recovers the signer's address from the body and the
signature (:func:`recover_signer`). Every body carries the digest of the Paillier
public key (``key``), which is fresh per training request, so a signature cannot
be replayed into another request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature, ValidationError

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.crypto.serialization import ciphertexts_from_bytes, ciphertexts_to_bytes
from deltaml.errors import DeltaMLValueError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

#: Name of this evidence format; part of every signed body's domain.
DOMAIN = "deltaml-evidence/1"

_HEX = re.compile(r"[0-9a-f]+")


def canonical_json(value: object) -> bytes:
    """The canonical bytes of a JSON value (sorted keys, no spaces, ASCII, no NaN)."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        ).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise DeltaMLValueError(f"not a canonical JSON value: {exc}") from None


def body_digest(body: Mapping[str, Any]) -> bytes:
    """SHA-256 of the domain tag and the canonical body: what a party signs."""
    return hashlib.sha256(DOMAIN.encode("ascii") + b"\x00" + canonical_json(body)).digest()


def sign_body(account: LocalAccount, body: Mapping[str, Any]) -> str:
    """EIP-191 signature of :func:`body_digest` by ``account`` (0x-prefixed hex)."""
    signed = account.sign_message(encode_defunct(primitive=body_digest(body)))
    return "0x" + bytes(signed.signature).hex()


def recover_signer(body: Mapping[str, Any], signature: str) -> str | None:
    """The checksummed address that signed ``body``, or ``None`` for a malformed signature."""
    if not isinstance(signature, str):
        return None
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
        if len(raw) != 65:
            return None
        return str(
            Account.recover_message(encode_defunct(primitive=body_digest(body)), signature=raw)
        )
    except (ValueError, TypeError, BadSignature, ValidationError):
        return None


def key_id(public_key: PublicKey) -> str:
    """SHA-256 (hex) of the public key's canonical form: binds a body to one request."""
    return hashlib.sha256(canonical_json(public_key.to_dict())).hexdigest()


# -- vectors ---------------------------------------------------------------------------
def vector_bytes(vector: EncryptedVector) -> bytes:
    return ciphertexts_to_bytes(vector.public_key, vector.ciphertexts)


def vector_digest(vector: EncryptedVector) -> str:
    """SHA-256 (hex) of the vector's ciphertexts as fixed-width big-endian bytes."""
    return hashlib.sha256(vector_bytes(vector)).hexdigest()


def vector_ref(vector: EncryptedVector) -> dict[str, Any]:
    """How a body names an encrypted vector: exponent, length and digest (no bound).

    The bound is the sender's claim about plaintext sizes, checkable by nobody and a
    function of its data, so it stays out of the evidence.
    """
    return digest_ref(vector_digest(vector), len(vector), vector.exponent)


def digest_ref(digest: str, length: int, exponent: int = 0) -> dict[str, Any]:
    """A body's name for a vector known only by its digest (:func:`vector_ref`): what a
    party that must not hold the ciphertexts checks a signature over."""
    return {"exponent": exponent, "length": length, "sha256": digest}


def encode_blob(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def decode_blob(text: object) -> bytes:
    if not isinstance(text, str):
        raise DeltaMLValueError("ciphertexts must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise DeltaMLValueError("ciphertexts are not valid base64") from None


def ciphertexts_of(public_key: PublicKey, blob: bytes, ref: Mapping[str, Any]) -> list[int]:
    """Ciphertexts of ``blob`` after checking it against its reference's digest and length."""
    if hashlib.sha256(blob).hexdigest() != ref.get("sha256"):
        raise DeltaMLValueError("ciphertexts do not match their digest")
    values = ciphertexts_from_bytes(public_key, blob)
    if len(values) != ref.get("length"):
        raise DeltaMLValueError("ciphertexts do not match their length")
    return [int(c) for c in values]


# -- integers ----------------------------------------------------------------------------
def hex_ints(values: Sequence[int]) -> list[str]:
    return [format(int(v), "x") for v in values]


def parse_hex_ints(values: object, what: str, max_bits: int) -> list[int]:
    """Non-negative hex integers of at most ``max_bits`` bits each."""
    if not isinstance(values, list):
        raise DeltaMLValueError(f"{what} must be a list of hex strings")
    out = []
    limit = -(-max_bits // 4)
    for value in values:
        if not isinstance(value, str) or len(value) > limit or not _HEX.fullmatch(value):
            raise DeltaMLValueError(
                f"{what} must be lower-case hex strings of at most {max_bits} bits"
            )
        out.append(int(value, 16))
    return out
