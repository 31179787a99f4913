"""Paillier cryptography for DeltaML: keys, fixed-point encoding, encrypted vectors.

Two levels, as in ``phe``: :class:`PublicKey`/:class:`PrivateKey` work on integers
mod ``n``; :class:`EncryptedVector` works on reals at an explicit fixed-point
exponent and tracks a precision bound so that nothing overflows silently.
"""

from deltaml.crypto.encoding import PlainMatrix, decode_int, encode_float, rescale
from deltaml.crypto.paillier import (
    PrivateKey,
    PublicKey,
    check_decryption,
    generate_keypair,
)
from deltaml.crypto.proofs import (
    check_rerandomization,
    failed_decryptions,
    failed_rerandomizations,
    prove_decryption,
)
from deltaml.crypto.vector import (
    MASK_STATISTICAL_BITS,
    OPERATION_COUNTS,
    EncryptedVector,
    mask_for_refresh,
    needs_refresh,
    refresh_masked,
)

__all__ = [
    "MASK_STATISTICAL_BITS",
    "OPERATION_COUNTS",
    "EncryptedVector",
    "PlainMatrix",
    "PrivateKey",
    "PublicKey",
    "check_decryption",
    "check_rerandomization",
    "decode_int",
    "encode_float",
    "failed_decryptions",
    "failed_rerandomizations",
    "generate_keypair",
    "mask_for_refresh",
    "needs_refresh",
    "prove_decryption",
    "refresh_masked",
    "rescale",
]
