"""The buyer's Paillier private keys at rest: scrypt + AES-256-GCM under the node's password."""

from __future__ import annotations

import base64
import json
import re

from Crypto.Cipher import AES
from Crypto.Protocol.KDF import scrypt
from Crypto.Random import get_random_bytes

from deltaml.crypto import PrivateKey
from deltaml.errors import DeltaMLValueError

#: scrypt cost of the sealed keys: 2**17 (128 MiB, about half a second), after the
#: guidance for secrets at rest; older sealings (2**15) are re-sealed on unlock.
SCRYPT_LOG2_N = 17
_KDF = re.compile(r"scrypt-n([0-9]{2})-r8-p1")


def seal_key(private_key: PrivateKey, password: str) -> dict[str, str]:
    salt, nonce = get_random_bytes(16), get_random_bytes(12)
    key = _derive(password, salt, SCRYPT_LOG2_N)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    blob, tag = cipher.encrypt_and_digest(json.dumps(private_key.to_dict()).encode())
    return {
        "kdf": f"scrypt-n{SCRYPT_LOG2_N}-r8-p1",
        "cipher": "aes-256-gcm",
        **{k: base64.b64encode(v).decode() for k, v in (("salt", salt), ("nonce", nonce))},
        "tag": base64.b64encode(tag).decode(),
        "ciphertext": base64.b64encode(blob).decode(),
    }


def _derive(password: str, salt: bytes, log2_n: int) -> bytes:
    return scrypt(password.encode(), salt, 32, N=2**log2_n, r=8, p=1)  # type: ignore[arg-type,return-value]


def sealed_cost(sealed: dict[str, str]) -> int:
    """log2 of the scrypt cost a sealed key was made with (15: the first format)."""
    match = _KDF.fullmatch(str(sealed.get("kdf", "")))
    if match is None or not 15 <= int(match.group(1)) <= 22:
        raise DeltaMLValueError(f"unknown key sealing {str(sealed.get('kdf'))[:40]!r}")
    return int(match.group(1))


def open_key(sealed: dict[str, str], password: str) -> PrivateKey:
    raw = {k: base64.b64decode(sealed[k]) for k in ("salt", "nonce", "tag", "ciphertext")}
    key = _derive(password, raw["salt"], sealed_cost(sealed))
    cipher = AES.new(key, AES.MODE_GCM, nonce=raw["nonce"])
    try:
        plain = cipher.decrypt_and_verify(raw["ciphertext"], raw["tag"])
    except ValueError:
        raise DeltaMLValueError("wrong password for the buyer's stored keys") from None
    return PrivateKey.from_dict(json.loads(plain))
